//! `GET /openapi.json`: the OpenAPI 3.1 document describes every route the
//! service serves, with its body, its answers and its error codes, and
//! nothing it does not serve.

use crate::support::{TestApp, TestOptions};
use serde_json::Value;
use uuid::Uuid;

/// Every route is registered with its description (`routes!`); a plain
/// `.route(` in the router would serve a path the document does not know.
#[test]
fn the_router_registers_no_route_without_its_description() {
    let router = include_str!("../../api/src/lib.rs");
    let plain: Vec<&str> = router
        .lines()
        .filter(|line| line.contains(".route(") || line.contains(".route_service("))
        .collect();
    assert!(
        plain.is_empty(),
        "routes registered without routes! (and so missing from /openapi.json): {plain:?}"
    );
}

#[tokio::test]
async fn every_documented_route_is_served_answers_its_errors_in_json_and_names_their_codes() {
    let app = TestApp::spawn_with(TestOptions {
        start_worker: false,
        ..Default::default()
    })
    .await;
    let response = app
        .http()
        .get(format!("{}/openapi.json", app.base_url))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            if !["get", "post"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let what = format!("{} {path}", method.to_uppercase());
            let responses = operation["responses"].as_object().expect(&what);
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{what}: a success answer"
            );
            if path != "/healthz" && path != "/openapi.json" && path != "/readyz" {
                let errors: Vec<&Value> = responses
                    .iter()
                    .filter(|(status, _)| status.starts_with('4') || status.starts_with('5'))
                    .map(|(_, answer)| answer)
                    .collect();
                assert!(!errors.is_empty(), "{what}: its errors");
                for error in errors {
                    let described = error["description"].as_str().unwrap_or_default();
                    assert!(
                        described
                            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                            .any(|word| word.len() > 3),
                        "{what}: an error answer names its codes: {described}"
                    );
                }
            }
            if method == "post" && !path.ends_with("/renew") {
                assert!(
                    operation.get("requestBody").is_some(),
                    "{what}: its request body"
                );
            }

            // The route is served: not the router's own 404 or 405.
            let url = format!(
                "{}{}",
                app.base_url,
                path.replace("{tenant_id}", &Uuid::new_v4().to_string())
                    .replace("{name}", "conversation_snooze_wakeup")
            );
            let request = match method.as_str() {
                "get" => app.http().get(&url),
                _ => app.http().post(&url).body("{}"),
            };
            let answer = request.send().await.expect(&what);
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{what} is not served: {body}");
            assert_ne!(
                body["extensions"]["code"], "NOT_FOUND",
                "{what} is not served: {body}"
            );
        }
    }
    assert!(operations >= 21, "{operations} operations documented");
    for expected in [
        "/hasura/events",
        "/hasura/actions",
        "/hasura/cron/{name}",
        "/webhooks/meta/{tenant_id}",
        "/webhooks/ses",
        "/webhooks/sns",
        "/webhooks/sms-status",
        "/codec/decode",
        "/codec/encode",
        "/webchat/{tenant_id}/messages",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} is documented");
    }
    // The shapes Hasura and the providers send are named.
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for schema in [
        "EventTriggerPayload",
        "ActionPayload",
        "ActionInput",
        "ApiErrorBody",
        "SnsEnvelope",
        "FirehoseRequest",
        "CodecBody",
    ] {
        assert!(schemas.contains_key(schema), "{schema} is described");
    }
    // An action's input is one of the inputs, as Hasura sends it (bare).
    let inputs = schemas["ActionInput"]["oneOf"].as_array().expect("oneOf");
    assert!(inputs.len() >= 12, "{inputs:?}");
    for input in inputs {
        assert!(
            input.get("$ref").is_some(),
            "each action's input is its own schema, untagged: {input}"
        );
    }
}
