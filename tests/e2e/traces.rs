//! Traces over OTLP: a Hasura event's trace goes on through the API, the
//! workflow and its activities to the provider's call, as one trace, and
//! the spans carry ids, never a person's address or the booking's words.
//! The collector is a wiremock server that keeps what the exporter posts
//! (OTLP/HTTP protobuf), decoded with the OTLP's own messages.

use crate::support::{TestApp, TestOptions, booking_event};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Hasura's trace: the one the event's `trace_context` names.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const HASURA_SPAN: &str = "00f067aa0ba902b7";

async fn exported_spans(collector: &MockServer) -> Vec<Span> {
    collector
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|request| ExportTraceServiceRequest::decode(request.body.as_slice()).ok())
        .flat_map(|export| export.resource_spans)
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            AnyValue::StringValue(text) => text.clone(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn a_hasura_events_trace_goes_on_through_the_workflow_to_the_providers_call() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let app = TestApp::spawn_with(TestOptions {
        otlp_endpoint: Some(format!("{}/v1/traces", collector.uri())),
        ..Default::default()
    })
    .await;
    app.add_email_account(true).await;
    let profile = Uuid::new_v4();
    let email = app.recipient("ana.traced");
    let contact = app
        .upsert_passenger(profile, "Ana López", &email, "es-MX")
        .await;
    let event_id = Uuid::new_v4().to_string();
    let mut event = booking_event(&event_id, app.tenant_id, profile, "BF-TRACED");
    event["event"]["trace_context"] = json!({"trace_id": TRACE_ID, "span_id": HASURA_SPAN});
    assert_eq!(app.post_event(&event).await.status(), 200);
    let workflow_id =
        busflow_workflows::names::notification_workflow_id(app.tenant_id, &event_id, contact);
    let outcome = app.workflow_result(&workflow_id).await.expect("sent");
    let message_id = outcome.delivered.expect("delivered").message_id.to_string();

    let spans = app
        .eventually(
            "the provider's call is exported in Hasura's trace",
            Duration::from_secs(30),
            || async {
                app.flush_traces();
                let spans: Vec<Span> = exported_spans(&collector)
                    .await
                    .into_iter()
                    .filter(|span| hex(&span.trace_id) == TRACE_ID)
                    .collect();
                spans
                    .iter()
                    .any(|span| span.name == "send EMAIL")
                    .then_some(spans)
            },
        )
        .await;
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();

    // The API continues Hasura's span.
    let api = spans
        .iter()
        .find(|span| span.name == "hasura event booking_confirmed")
        .unwrap_or_else(|| panic!("the API's span: {names:?}"));
    assert_eq!(hex(&api.parent_span_id), HASURA_SPAN);
    // The workflow's start, its run and its activities are in the trace.
    for expected in [
        "StartWorkflow:NotificationWorkflow",
        "RunWorkflow:NotificationWorkflow",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(
        names.iter().any(|name| name.contains("dispatch_message")),
        "the dispatch activity in {names:?}"
    );
    // The provider's call, a client span of its own, names the message.
    let send = spans
        .iter()
        .find(|span| span.name == "send EMAIL")
        .expect("the provider's call");
    assert_eq!(attribute(send, "busflow.message_id"), Some(message_id));
    assert_eq!(
        attribute(send, "busflow.tenant_id"),
        Some(app.tenant_id.to_string())
    );
    assert!(
        spans.iter().any(|span| span.span_id == send.parent_span_id),
        "the call's parent is a span of the same trace: {names:?}"
    );

    // What the spans say holds no person's data.
    let everything = format!("{spans:?}");
    for secret in [email.as_str(), "BF-TRACED", "Ana"] {
        assert!(
            !everything.contains(secret),
            "{secret} in the exported spans"
        );
    }
}
