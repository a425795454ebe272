//! Temporal workflow definitions for busflow-comms — deterministic code only:
//! no IO, no clocks, no randomness but the context's. Activities live in
//! `busflow-activities`; names shared with the API and ops live in `names`.

pub mod batch;
mod clock;
pub mod connect_whatsapp;
pub mod fanout_chunk;
pub mod floor;
pub mod labels;
pub mod names;
pub mod notification;
pub mod provisioning;
pub mod snooze;
mod steps;
pub mod trip_reminder;
pub mod verify_email_domain;
pub mod watchdog;

pub use batch::{BatchNotificationWorkflow, BatchProgress, BatchRequest, Recipients};
pub use connect_whatsapp::{ConnectWhatsAppWorkflow, TemplateSyncWorkflow};
pub use fanout_chunk::{ChunkOutcome, ChunkRequest, FanoutChunkWorkflow};
pub use notification::{NotificationOutcome, NotificationRequest, NotificationWorkflow};
pub use provisioning::ConnectOutcome;
pub use snooze::{SnoozeRequest, SnoozeWorkflow};
pub use trip_reminder::{BookingChange, TripReminderRequest, TripReminderWorkflow};
pub use verify_email_domain::VerifyEmailDomainWorkflow;
