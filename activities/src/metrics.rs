//! Process-wide counters of what this worker did, in Prometheus text format:
//! provider calls by trigger, channel and outcome, their latency, and
//! rate-limit waits. Rendered by `GET /metrics` of the process that hosts the
//! worker (`dev`, or `worker --metrics-listen`). Cluster-wide gauges (stuck
//! messages, message counts) are read from Postgres by the API instead.

use crate::model::Channel;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the dispatch latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How one provider call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DispatchOutcome {
    Sent,
    Rejected,
    Retry,
    /// The provider may have accepted it; nobody knows.
    Unknown,
}

impl DispatchOutcome {
    fn as_str(self) -> &'static str {
        match self {
            DispatchOutcome::Sent => "sent",
            DispatchOutcome::Rejected => "rejected",
            DispatchOutcome::Retry => "retry",
            DispatchOutcome::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Counters {
    dispatches: BTreeMap<(String, Channel, DispatchOutcome), u64>,
    latency: BTreeMap<Channel, Histogram>,
    rate_limited: BTreeMap<Channel, (u64, f64)>,
}

/// The registry; one per process.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// This process's registry.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        let mut guard = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// One provider call for `trigger` on `channel`, and how long it took.
    pub fn dispatched(
        &self,
        trigger: &str,
        channel: Channel,
        outcome: DispatchOutcome,
        took: Duration,
    ) {
        let secs = took.as_secs_f64();
        self.with(|c| {
            *c.dispatches
                .entry((trigger.to_owned(), channel, outcome))
                .or_default() += 1;
            let h = c.latency.entry(channel).or_default();
            h.count += 1;
            h.sum += secs;
            for (slot, bound) in h.counts.iter_mut().zip(LATENCY_BUCKETS) {
                if secs <= bound {
                    *slot += 1;
                }
            }
        });
    }

    /// A send held back by a rate limit for `wait`.
    pub fn rate_limited(&self, channel: Channel, wait: Duration) {
        self.with(|c| {
            let entry = c.rate_limited.entry(channel).or_default();
            entry.0 += 1;
            entry.1 += wait.as_secs_f64();
        });
    }

    /// Appends the Prometheus text exposition of every series.
    pub fn render(&self, out: &mut String) {
        self.with(|c| {
            let _ = writeln!(
                out,
                "# HELP busflow_dispatch_total Provider calls by trigger, channel and outcome (sent, rejected, retry)."
            );
            let _ = writeln!(out, "# TYPE busflow_dispatch_total counter");
            for ((trigger, channel, outcome), n) in &c.dispatches {
                let _ = writeln!(
                    out,
                    "busflow_dispatch_total{{trigger=\"{trigger}\",channel=\"{channel}\",outcome=\"{}\"}} {n}",
                    outcome.as_str()
                );
            }
            let _ = writeln!(
                out,
                "# HELP busflow_dispatch_seconds Time of one provider call, by channel."
            );
            let _ = writeln!(out, "# TYPE busflow_dispatch_seconds histogram");
            for (channel, h) in &c.latency {
                for (bound, n) in LATENCY_BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(
                        out,
                        "busflow_dispatch_seconds_bucket{{channel=\"{channel}\",le=\"{bound}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "busflow_dispatch_seconds_bucket{{channel=\"{channel}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "busflow_dispatch_seconds_sum{{channel=\"{channel}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "busflow_dispatch_seconds_count{{channel=\"{channel}\"}} {}",
                    h.count
                );
            }
            let _ = writeln!(
                out,
                "# HELP busflow_rate_limit_waits_total Sends held back by a rate limit, by channel."
            );
            let _ = writeln!(out, "# TYPE busflow_rate_limit_waits_total counter");
            for (channel, (n, _)) in &c.rate_limited {
                let _ = writeln!(
                    out,
                    "busflow_rate_limit_waits_total{{channel=\"{channel}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP busflow_rate_limit_wait_seconds_total Time sends were told to wait by rate limits, by channel."
            );
            let _ = writeln!(out, "# TYPE busflow_rate_limit_wait_seconds_total counter");
            for (channel, (_, secs)) in &c.rate_limited {
                let _ = writeln!(
                    out,
                    "busflow_rate_limit_wait_seconds_total{{channel=\"{channel}\"}} {secs}"
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_latency_buckets_and_waits() {
        let m = Metrics::default();
        m.dispatched(
            "booking_confirmed",
            Channel::Email,
            DispatchOutcome::Sent,
            Duration::from_millis(40),
        );
        m.dispatched(
            "booking_confirmed",
            Channel::Email,
            DispatchOutcome::Sent,
            Duration::from_secs(3),
        );
        m.rate_limited(Channel::Sms, Duration::from_millis(500));
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "busflow_dispatch_total{trigger=\"booking_confirmed\",channel=\"EMAIL\",outcome=\"sent\"} 2"
        ));
        assert!(out.contains("busflow_dispatch_seconds_bucket{channel=\"EMAIL\",le=\"0.05\"} 1"));
        assert!(out.contains("busflow_dispatch_seconds_bucket{channel=\"EMAIL\",le=\"5\"} 2"));
        assert!(out.contains("busflow_rate_limit_waits_total{channel=\"SMS\"} 1"));
        assert!(out.contains("busflow_rate_limit_wait_seconds_total{channel=\"SMS\"} 0.5"));
    }
}
