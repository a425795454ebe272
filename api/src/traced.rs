//! Continues the caller's trace (when tracing is on,
//! `busflow_activities::traces`): each request runs in a server span whose
//! parent is the caller's context, and what the handler starts or signals
//! in Temporal carries it on.
//!
//! The caller's context comes from a W3C `traceparent` header, else from
//! B3's `X-B3-TraceId` / `X-B3-SpanId` (what Hasura sends its webhooks),
//! and for a Hasura event from its `event.trace_context` (`trace_id`,
//! `span_id`: hex, or decimal numbers from older Hasura versions), which
//! the events handler reads itself. Health checks and scrapes are not
//! traced.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use busflow_activities::traces::Traces;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    FutureExt as _, SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// Routes whose requests are not traced here: the events handler traces
/// its own (its parent may be in the body), the rest are probes.
const NOT_HERE: [&str; 4] = ["/hasura/events", "/healthz", "/readyz", "/metrics"];

/// Every request but [`NOT_HERE`]'s, in a server span.
pub async fn requests(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    if app.traces.tracer().is_none() || NOT_HERE.contains(&route.as_str()) {
        return next.run(request).await;
    }
    let parent = parent_from_headers(request.headers());
    let method = request.method().to_string();
    in_server_span(
        &app.traces,
        format!("{method} {route}"),
        &parent,
        vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("http.route", route),
        ],
        next.run(request),
    )
    .await
}

/// Runs `handling` in a server span `name`, child of `parent`; a 5xx
/// answer marks the span an error.
pub async fn in_server_span<R: ResponseStatus>(
    traces: &Traces,
    name: String,
    parent: &Context,
    attributes: Vec<KeyValue>,
    handling: impl Future<Output = R>,
) -> R {
    if traces.tracer().is_none() {
        return handling.await;
    }
    let cx = traces.server_span(name, parent, attributes);
    let answer = handling.with_context(cx.clone()).await;
    let span = cx.span();
    let status = answer.status_code();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(format!("answered {status}")));
    }
    span.end();
    answer
}

/// The HTTP status an answer has.
pub trait ResponseStatus {
    fn status_code(&self) -> u16;
}

impl ResponseStatus for Response {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// The caller's context from `traceparent`, else from B3 headers; an empty
/// context (a new trace) without either.
pub fn parent_from_headers(headers: &axum::http::HeaderMap) -> Context {
    let w3c = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if w3c.span().span_context().is_valid() {
        return w3c;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match (header("x-b3-traceid"), header("x-b3-spanid")) {
        (Some(trace_id), Some(span_id)) => remote_parent(trace_id, span_id).unwrap_or_default(),
        _ => Context::new(),
    }
}

/// The context of a Hasura event's `trace_context`.
pub fn parent_from_hasura(trace_context: &Value) -> Option<Context> {
    let id = |key: &str| match trace_context.get(key)? {
        Value::String(text) => Some(text.clone()),
        // Hasura 1.3 sent them as (decimal) numbers.
        Value::Number(number) => number.as_u64().map(|n| format!("{n:x}")),
        _ => None,
    };
    remote_parent(&id("trace_id")?, &id("span_id")?)
}

/// A sampled remote parent from hex ids (shorter ones are left-padded, as
/// B3's 64-bit trace ids are).
fn remote_parent(trace_id: &str, span_id: &str) -> Option<Context> {
    let trace_id = TraceId::from_hex(&format!("{:0>32}", trace_id.trim())).ok()?;
    let span_id = SpanId::from_hex(&format!("{:0>16}", span_id.trim())).ok()?;
    let span = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    span.is_valid()
        .then(|| Context::new().with_remote_span_context(span))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn ids(cx: &Context) -> (String, String) {
        let span = cx.span();
        let sc = span.span_context();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    }

    #[test]
    fn a_traceparent_header_is_the_parent() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("header"),
        );
        assert_eq!(
            ids(&parent_from_headers(&headers)),
            (
                "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
                "00f067aa0ba902b7".to_owned()
            )
        );
    }

    #[test]
    fn b3_headers_are_the_parent_when_there_is_no_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert("x-b3-traceid", "80f198ee56343ba8".parse().expect("header"));
        headers.insert("x-b3-spanid", "e457b5a2e4d86bd1".parse().expect("header"));
        assert_eq!(
            ids(&parent_from_headers(&headers)),
            (
                "000000000000000080f198ee56343ba8".to_owned(),
                "e457b5a2e4d86bd1".to_owned()
            )
        );
        assert!(
            !parent_from_headers(&HeaderMap::new())
                .span()
                .span_context()
                .is_valid()
        );
    }

    #[test]
    fn a_hasura_trace_context_in_hex_or_as_numbers_is_the_parent() {
        let hex = serde_json::json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"});
        assert_eq!(
            ids(&parent_from_hasura(&hex).expect("a parent")).0,
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // As Hasura 1.3 sent it (graphql-engine issue 6465).
        let numbers = serde_json::json!({"trace_id": 1000000000000000000u64, "span_id": 4083814875249555000u64});
        let (trace, span) = ids(&parent_from_hasura(&numbers).expect("a parent"));
        assert_eq!(
            trace,
            format!("{:0>32}", format!("{:x}", 1000000000000000000u64))
        );
        assert_eq!(span, format!("{:x}", 4083814875249555000u64));
        for unusable in [
            serde_json::json!({}),
            serde_json::json!({"trace_id": "zz", "span_id": "00f067aa0ba902b7"}),
            serde_json::json!({"trace_id": "0", "span_id": "0"}),
        ] {
            assert!(parent_from_hasura(&unusable).is_none(), "{unusable}");
        }
    }
}
