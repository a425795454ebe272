//! What SES does that moto does not: keep a send's message tags and return
//! them in every event it publishes about that send (`mail.tags`). moto
//! accepts `EmailTags` and drops them, so without this the receipts played
//! for an email whose answer the worker never read could not name our
//! message, as real ones do.
//!
//! The front is an HTTP proxy between the worker and moto. Each request is
//! forwarded whole, on a task of its own: a worker killed after writing its
//! request still has it processed, as by AWS. For each `SendEmail` it keeps
//! the tags under the `MessageId` moto answered.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// SES v2's `SendEmail` path.
const SEND_EMAIL: &str = "/v2/email/outbound-emails";

/// The tags of each email sent through the front, by SES message id.
pub type SentTags = Arc<Mutex<HashMap<String, HashMap<String, Vec<String>>>>>;

pub struct SesFront {
    /// The endpoint to give the worker instead of moto's.
    pub url: String,
    pub tags: SentTags,
    server: JoinHandle<()>,
}

impl Drop for SesFront {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct Upstream {
    http: reqwest::Client,
    moto: String,
    tags: SentTags,
}

impl SesFront {
    pub async fn start(moto: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SES front");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let tags = SentTags::default();
        let upstream = Upstream {
            http: busflow_activities::http::client(std::time::Duration::from_secs(30))
                .expect("http client"),
            moto: moto.trim_end_matches('/').to_owned(),
            tags: tags.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(upstream);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, tags, server }
    }
}

async fn forward(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        // The worker died mid-request: nothing whole reached "AWS".
        return status(StatusCode::BAD_REQUEST);
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let is_send = parts.method == axum::http::Method::POST && parts.uri.path() == SEND_EMAIL;
    // Its own task: the request is served even if its sender is gone.
    let served = tokio::spawn(async move {
        let mut outgoing = upstream
            .http
            .request(parts.method.clone(), format!("{}{path}", upstream.moto))
            .body(body.clone());
        for (name, value) in &parts.headers {
            if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
                outgoing = outgoing.header(name, value);
            }
        }
        let answer = outgoing.send().await.ok()?;
        let code = answer.status();
        let headers = answer.headers().clone();
        let bytes = answer.bytes().await.ok()?;
        if is_send && code.is_success() {
            keep_tags(&upstream.tags, &body, &bytes);
        }
        Some((code, headers, bytes))
    });
    match served.await.ok().flatten() {
        Some((code, headers, bytes)) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = code;
            for (name, value) in &headers {
                if name != axum::http::header::CONTENT_LENGTH
                    && name != axum::http::header::TRANSFER_ENCODING
                {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        None => status(StatusCode::BAD_GATEWAY),
    }
}

fn keep_tags(tags: &SentTags, request: &Bytes, answer: &Bytes) {
    let (Ok(request), Ok(answer)) = (
        serde_json::from_slice::<Value>(request),
        serde_json::from_slice::<Value>(answer),
    ) else {
        return;
    };
    let Some(message_id) = answer["MessageId"].as_str() else {
        return;
    };
    let sent: HashMap<String, Vec<String>> = request["EmailTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tag| {
            Some((
                tag["Name"].as_str()?.to_owned(),
                vec![tag["Value"].as_str()?.to_owned()],
            ))
        })
        .collect();
    tags.lock()
        .expect("tags lock")
        .insert(message_id.to_owned(), sent);
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}
