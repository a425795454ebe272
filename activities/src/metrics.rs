//! This process's metrics, in the `prometheus` crate's registry: provider
//! calls by trigger, channel and outcome, their latency, and rate-limit
//! waits; next to them, the Temporal SDK's own metrics (task latencies,
//! slots, sticky cache, pollers) when a worker runs in this process.
//! Rendered by `GET /metrics` of the process that hosts the worker (`dev`,
//! or `worker --metrics-listen`); cluster-wide gauges (stuck messages,
//! message counts) are read from Postgres by the API instead.
//!
//! The SDK keeps its metrics in a registry of its own that only its
//! exporter can read, so the worker starts that exporter on a loopback port
//! ([`sdk_meter`]) and [`Metrics::render`] appends what it serves.

use crate::model::Channel;
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{PrometheusExporterOptions, start_prometheus_metric_exporter};

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

/// The registry; one per process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    dispatches: IntCounterVec,
    latency: HistogramVec,
    rate_limit_waits: IntCounterVec,
    rate_limit_wait_seconds: CounterVec,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's registry.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series of this module, none recorded yet.
    pub fn new() -> Self {
        let registry = Registry::new();
        let dispatches = IntCounterVec::new(
            Opts::new(
                "busflow_dispatch_total",
                "Provider calls by trigger, channel and outcome (sent, rejected, retry, unknown).",
            ),
            &["trigger", "channel", "outcome"],
        )
        .expect("a valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "busflow_dispatch_seconds",
                "Time of one provider call, by channel.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["channel"],
        )
        .expect("a valid metric");
        let rate_limit_waits = IntCounterVec::new(
            Opts::new(
                "busflow_rate_limit_waits_total",
                "Sends held back by a rate limit, by channel.",
            ),
            &["channel"],
        )
        .expect("a valid metric");
        let rate_limit_wait_seconds = CounterVec::new(
            Opts::new(
                "busflow_rate_limit_wait_seconds_total",
                "Time sends were told to wait by rate limits, by channel.",
            ),
            &["channel"],
        )
        .expect("a valid metric");
        for collector in [
            Box::new(dispatches.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(rate_limit_waits.clone()),
            Box::new(rate_limit_wait_seconds.clone()),
        ] {
            registry
                .register(collector)
                .expect("each series is registered once");
        }
        // Every channel's rate-limit series exists from the start, so
        // `rate()` over them works before the first wait.
        for channel in Channel::ALL {
            rate_limit_waits.with_label_values(&[channel.as_str()]);
            rate_limit_wait_seconds.with_label_values(&[channel.as_str()]);
        }
        Self {
            registry,
            dispatches,
            latency,
            rate_limit_waits,
            rate_limit_wait_seconds,
        }
    }

    /// One provider call for `trigger` on `channel`, and how long it took.
    pub fn dispatched(
        &self,
        trigger: &str,
        channel: Channel,
        outcome: DispatchOutcome,
        took: Duration,
    ) {
        self.dispatches
            .with_label_values(&[trigger, channel.as_str(), outcome.as_str()])
            .inc();
        self.latency
            .with_label_values(&[channel.as_str()])
            .observe(took.as_secs_f64());
    }

    /// A send held back by a rate limit for `wait`.
    pub fn rate_limited(&self, channel: Channel, wait: Duration) {
        self.rate_limit_waits
            .with_label_values(&[channel.as_str()])
            .inc();
        self.rate_limit_wait_seconds
            .with_label_values(&[channel.as_str()])
            .inc_by(wait.as_secs_f64());
    }

    /// The text exposition of this registry's series.
    pub fn render_own(&self) -> String {
        encode(&self.registry.gather())
    }

    /// The text exposition of this registry's series, followed by the
    /// Temporal SDK's when a worker runs in this process. A scrape of the
    /// SDK's exporter that fails is reported as
    /// `busflow_sdk_metrics_up 0`, never as an error of the whole scrape.
    pub async fn render(&self, http: &reqwest::Client) -> String {
        let mut out = self.render_own();
        let Some(exporter) = SDK_EXPORTER.get() else {
            return out;
        };
        let scraped = async {
            http.get(format!("http://{}/metrics", exporter.address))
                .timeout(Duration::from_secs(5))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
        }
        .await;
        out.push_str(
            "# HELP busflow_sdk_metrics_up Whether the Temporal SDK's metrics of this process could be read.\n# TYPE busflow_sdk_metrics_up gauge\n",
        );
        match scraped {
            Ok(text) => {
                out.push_str("busflow_sdk_metrics_up 1\n");
                out.push_str(&text);
            }
            Err(e) => {
                tracing::warn!("the Temporal SDK's metrics could not be read: {e}");
                out.push_str("busflow_sdk_metrics_up 0\n");
            }
        }
        out
    }
}

/// Prometheus's text format of `families` (the crate escapes label values).
pub fn encode(families: &[prometheus::proto::MetricFamily]) -> String {
    let mut buffer = Vec::new();
    // Encoding into a Vec fails only on a metric family without metrics,
    // which `gather` never returns.
    if let Err(e) = TextEncoder::new().encode(families, &mut buffer) {
        tracing::error!("encoding metrics: {e}");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// The Temporal SDK's exporter of this process.
struct SdkExporter {
    meter: Arc<dyn CoreMeter>,
    address: SocketAddr,
}

static SDK_EXPORTER: OnceLock<SdkExporter> = OnceLock::new();

/// The meter every worker of this process records the SDK's metrics with:
/// one exporter per process (on a loopback port of its own), so two
/// workers in one process add to the same series instead of reporting
/// two families of the same name. Durations in seconds, counters with
/// `_total`, as Prometheus names them. The exporter runs on a thread of
/// its own, so it outlives the runtime of whichever worker started it.
pub fn sdk_meter() -> anyhow::Result<Arc<dyn CoreMeter>> {
    if let Some(exporter) = SDK_EXPORTER.get() {
        return Ok(exporter.meter.clone());
    }
    let (exporter, _) = crate::background::runtime("temporal-sdk-metrics", || async {
        let options = PrometheusExporterOptions::builder()
            .socket_addr(SocketAddr::from(([127, 0, 0, 1], 0)))
            .counters_total_suffix(true)
            .unit_suffix(true)
            .use_seconds_for_durations(true)
            .build();
        // The exporter's server is a task of the background runtime.
        let started = start_prometheus_metric_exporter(options)?;
        Ok(SdkExporter {
            meter: started.meter,
            address: started.bound_addr,
        })
    })?;
    // Two workers starting at once: the second exporter is left unused.
    let _ = SDK_EXPORTER.set(exporter);
    SDK_EXPORTER
        .get()
        .map(|e| e.meter.clone())
        .ok_or_else(|| anyhow::anyhow!("the SDK's metrics exporter is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_latency_buckets_and_waits() {
        let m = Metrics::new();
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
        let out = m.render_own();
        assert!(out.contains(
            "busflow_dispatch_total{channel=\"EMAIL\",outcome=\"sent\",trigger=\"booking_confirmed\"} 2"
        ), "{out}");
        assert!(out.contains("busflow_dispatch_seconds_bucket{channel=\"EMAIL\",le=\"0.05\"} 1"));
        assert!(out.contains("busflow_dispatch_seconds_bucket{channel=\"EMAIL\",le=\"5\"} 2"));
        assert!(out.contains("busflow_rate_limit_waits_total{channel=\"SMS\"} 1"));
        assert!(out.contains("busflow_rate_limit_wait_seconds_total{channel=\"SMS\"} 0.5"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.dispatched(
            "a \"quoted\\\" trigger\nwith a line break",
            Channel::Sms,
            DispatchOutcome::Retry,
            Duration::from_millis(1),
        );
        let out = m.render_own();
        assert!(
            out.contains(r#"trigger="a \"quoted\\\" trigger\nwith a line break""#),
            "{out}"
        );
    }
}
