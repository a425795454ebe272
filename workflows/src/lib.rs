//! Temporal workflow definitions for busflow-comms — deterministic code only:
//! no IO, no clocks, no randomness but the context's. Activities live in
//! `busflow-activities`; names shared with the API and ops live in `names`.

pub mod batch;
mod clock;
pub mod fanout_chunk;
pub mod floor;
pub mod names;
pub mod notification;
pub mod snooze;
mod steps;
pub mod trip_reminder;
pub mod watchdog;

pub use batch::{BatchNotificationWorkflow, BatchProgress, BatchRequest, Recipients};
pub use fanout_chunk::{ChunkOutcome, ChunkRequest, FanoutChunkWorkflow};
pub use notification::{NotificationOutcome, NotificationRequest, NotificationWorkflow};
pub use snooze::{SnoozeRequest, SnoozeWorkflow};
pub use trip_reminder::{BookingChange, TripReminderRequest, TripReminderWorkflow};
