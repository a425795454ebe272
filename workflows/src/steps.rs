//! Options of the short Postgres steps workflows run as local activities.

use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_sdk::LocalActivityOptions;

/// A Postgres read or write that must eventually happen: retried from 0.5 s
/// up to every 30 s for as long as Postgres is away.
pub(crate) fn postgres_step(summary: &str, start_to_close: Duration) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(start_to_close)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(500))
                .maximum_interval(Duration::from_secs(30))
                .build(),
        )
        .summary(summary.to_owned())
        .build()
}
