//! `GET /metrics`: Prometheus text exposition, behind a bearer token when
//! `BUSFLOW_METRICS_TOKEN` is set. The gauges are read from
//! Postgres at scrape time, so every API replica reports the same truth
//! whichever worker did the work. The process's own counters (provider
//! calls, latency, rate-limit waits) follow when a worker runs in it.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use busflow_activities::metrics::encode;
use busflow_activities::model::Provider;
use busflow_activities::store::dead_letters::DeadLetterCode;
use busflow_activities::store::gauges::{self, Gauges};
use busflow_activities::store::quarantine::QuarantineReason;
use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format: the cluster's gauges from Postgres, this process's counters and the Temporal SDK's metrics", content_type = "text/plain", body = String),
        (status = 401, description = "UNAUTHORIZED: BUSFLOW_METRICS_TOKEN is set and the bearer token is missing or wrong", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn metrics(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = &app.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
            return Err(ApiError::unauthorized(
                "/metrics needs Authorization: Bearer <BUSFLOW_METRICS_TOKEN>",
            ));
        }
    }
    let gauges = gauges::read(&app.pool, app.config.stuck_threshold).await?;
    let registry = cluster_gauges(&gauges)
        .map_err(|e| anyhow::anyhow!("registering the /metrics gauges: {e}"))?;
    let mut out = encode(&registry.gather());
    out.push_str(
        &busflow_activities::metrics::global()
            .render(&app.http)
            .await,
    );
    Ok(([(header::CONTENT_TYPE, TEXT_FORMAT)], out))
}

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// The scrape's Postgres gauges as a registry of their own.
fn cluster_gauges(gauges: &Gauges) -> prometheus::Result<Registry> {
    let registry = Registry::new();
    let gauge = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
        let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(vec.clone()))?;
        Ok(vec)
    };
    let dead_letters = gauge(
        "busflow_inbound_dead_letters",
        "Inbound messages nobody could be found for, kept for replay, by provider and reason.",
        &["provider", "reason"],
    )?;
    // Every reason is reported, zero included, so alerts see a series.
    for provider in Provider::ALL {
        for code in DeadLetterCode::ALL {
            dead_letters.with_label_values(&[provider.as_str(), code.as_str()]);
        }
    }
    for (provider, code, count) in &gauges.dead_letters {
        dead_letters
            .with_label_values(&[provider, code])
            .set(*count);
    }
    let quarantined = gauge(
        "busflow_inbound_quarantined_24h",
        "Inbound mail quarantined in the last 24 h (SES does not vouch for its sender), by reason.",
        &["reason"],
    )?;
    for reason in QuarantineReason::ALL {
        quarantined.with_label_values(&[reason.as_str()]);
    }
    for (reason, count) in &gauges.quarantined_24h {
        quarantined.with_label_values(&[reason]).set(*count);
    }
    let identifier_problems = gauge(
        "busflow_contact_identifier_problems",
        "Contacts with a field of their source row that could not be used, by kind and field.",
        &["kind", "field"],
    )?;
    for (kind, field, count) in &gauges.identifier_problems {
        identifier_problems
            .with_label_values(&[kind, field])
            .set(*count);
    }
    for (name, help, value) in [
        (
            "busflow_stuck_messages",
            "Messages QUEUED for longer than the stuck threshold.",
            gauges.stuck,
        ),
        (
            "busflow_unconfirmed_messages",
            "Messages claimed for sending longer than the stuck threshold ago whose outcome is still unknown (they may have reached the person).",
            gauges.unconfirmed,
        ),
    ] {
        let single = IntGauge::with_opts(Opts::new(name, help))?;
        single.set(value);
        registry.register(Box::new(single))?;
    }
    let messages = gauge(
        "busflow_messages_24h",
        "Messages created in the last 24 h by channel, direction and status.",
        &["channel", "direction", "status"],
    )?;
    for (channel, direction, status, count) in &gauges.messages_24h {
        messages
            .with_label_values(&[channel, direction, status])
            .set(*count);
    }
    Ok(registry)
}

/// `GET /metrics` of a worker without the API: this process's metrics and
/// the Temporal SDK's.
pub fn worker_router() -> axum::Router {
    let http = reqwest::Client::new();
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async move {
            let out = busflow_activities::metrics::global().render(&http).await;
            ([(header::CONTENT_TYPE, TEXT_FORMAT)], out)
        }),
    )
}
