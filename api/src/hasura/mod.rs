//! Hasura's calls into this service: event triggers (and, later, cron
//! triggers and actions).

pub mod actions;
pub mod cron;
pub mod events;
pub mod payload;
pub mod provisioning;
