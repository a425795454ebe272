//! Everything a busflow-comms activity touches: the domain model, Postgres
//! store, templates, provider adapters, secrets, and the `#[activities]`
//! implementations registered on the worker. Workflows call these activities
//! by their definitions; nothing here is deterministic-only.

pub mod background;
pub mod crypto;
pub mod email_domains;
pub mod fanout;
pub mod faults;
pub mod floor;
pub mod http;
pub mod identifiers;
pub mod inbox;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod notification;
pub mod payload_codec;
pub mod planning;
pub mod providers;
pub mod provisioning;
pub mod quiet_hours;
pub mod rate_limit;
pub mod secrets;
pub mod sms_pool;
pub mod store;
pub mod templates;
pub mod traces;
pub mod triggers;
pub mod trips;
pub mod watchdog;
pub mod workflow_state;
