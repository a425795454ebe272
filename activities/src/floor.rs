//! The benchmark's floor: an activity that does nothing, so `busflow-comms
//! bench` can measure what one durable step costs on a Temporal server with
//! none of our work in it. Registered only by the benchmark's worker.

use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct FloorActivities;

#[activities]
impl FloorActivities {
    /// Returns its input.
    #[activity(name = "floor_noop")]
    pub async fn noop(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: u64,
    ) -> Result<u64, ActivityError> {
        Ok(input)
    }
}
