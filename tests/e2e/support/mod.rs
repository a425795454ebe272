//! Test harness: real Postgres, a real Temporal dev server, moto.

pub mod app;
pub mod browser;
pub mod hasura;
#[path = "../../shared/hasura_metadata.rs"]
pub mod hasura_metadata;
pub mod meta;
pub mod services;
pub mod sns_inbound;
pub mod story;

pub use app::{TestApp, TestOptions, booking_event, profile_event};
