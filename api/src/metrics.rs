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
use std::fmt::Write;
use std::sync::Arc;
use subtle::ConstantTimeEq;

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
    let threshold = app.config.stuck_threshold.as_secs_f64();
    let stuck: i64 = sqlx::query_scalar(
        "select count(*) from messages where status = 'QUEUED' and created_at < now() - make_interval(secs => $1)",
    )
    .bind(threshold)
    .fetch_one(&app.pool)
    .await
    .map_err(anyhow::Error::from)?;
    let unconfirmed: i64 = sqlx::query_scalar(
        "select count(*) from messages where status = 'SENDING' and send_claimed_at < now() - make_interval(secs => $1)",
    )
    .bind(threshold)
    .fetch_one(&app.pool)
    .await?;
    let by_status: Vec<(String, String, String, i64)> = sqlx::query_as(
        "select channel, direction, status, count(*) from messages
          where created_at > now() - interval '24 hours'
          group by channel, direction, status order by 1, 2, 3",
    )
    .fetch_all(&app.pool)
    .await
    .map_err(anyhow::Error::from)?;
    let dead_letters: Vec<(String, String, i64)> = sqlx::query_as(
        "select provider, code, count(*) from inbound_dead_letters
          where replayed_at is null group by provider, code order by 1, 2",
    )
    .fetch_all(&app.pool)
    .await?;
    let quarantined: Vec<(String, i64)> = sqlx::query_as(
        "select reason, count(*) from inbound_quarantine
          where created_at > now() - interval '24 hours' group by reason order by 1",
    )
    .fetch_all(&app.pool)
    .await?;
    let identifier_problems: Vec<(String, String, i64)> = sqlx::query_as(
        "select c.kind, p.field, count(*) from contacts c, jsonb_object_keys(c.identifier_problems) as p(field)
          group by c.kind, p.field order by 1, 2",
    )
    .fetch_all(&app.pool)
    .await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP busflow_inbound_dead_letters Inbound messages nobody could be found for, kept for replay, by provider and reason."
    );
    let _ = writeln!(out, "# TYPE busflow_inbound_dead_letters gauge");
    for (provider, code, count) in dead_letters {
        let _ = writeln!(
            out,
            "busflow_inbound_dead_letters{{provider=\"{provider}\",reason=\"{code}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP busflow_inbound_quarantined_24h Inbound mail quarantined in the last 24 h (SES does not vouch for its sender), by reason."
    );
    let _ = writeln!(out, "# TYPE busflow_inbound_quarantined_24h gauge");
    for (reason, count) in quarantined {
        let _ = writeln!(
            out,
            "busflow_inbound_quarantined_24h{{reason=\"{reason}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP busflow_contact_identifier_problems Contacts with a field of their source row that could not be used, by kind and field."
    );
    let _ = writeln!(out, "# TYPE busflow_contact_identifier_problems gauge");
    for (kind, field, count) in identifier_problems {
        let _ = writeln!(
            out,
            "busflow_contact_identifier_problems{{kind=\"{kind}\",field=\"{field}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP busflow_stuck_messages Messages QUEUED for longer than the stuck threshold."
    );
    let _ = writeln!(out, "# TYPE busflow_stuck_messages gauge");
    let _ = writeln!(out, "busflow_stuck_messages {stuck}");
    let _ = writeln!(
        out,
        "# HELP busflow_unconfirmed_messages Messages claimed for sending longer than the stuck threshold ago whose outcome is still unknown (they may have reached the person)."
    );
    let _ = writeln!(out, "# TYPE busflow_unconfirmed_messages gauge");
    let _ = writeln!(out, "busflow_unconfirmed_messages {unconfirmed}");
    let _ = writeln!(
        out,
        "# HELP busflow_messages_24h Messages created in the last 24 h by channel, direction and status."
    );
    let _ = writeln!(out, "# TYPE busflow_messages_24h gauge");
    for (channel, direction, status, count) in by_status {
        let _ = writeln!(
            out,
            "busflow_messages_24h{{channel=\"{channel}\",direction=\"{direction}\",status=\"{status}\"}} {count}"
        );
    }
    busflow_activities::metrics::global().render(&mut out);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}

/// `GET /metrics` of a worker without the API: this process's counters only.
pub fn worker_router() -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            let mut out = String::new();
            busflow_activities::metrics::global().render(&mut out);
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
        }),
    )
}
