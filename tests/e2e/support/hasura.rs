//! Plays Hasura from the shipped metadata (`hasura/metadata`): for a write
//! on a table (an INSERT row, or an UPDATE old → new) it delivers every event
//! trigger Hasura would fire, the way Hasura does:
//!
//! - one event per trigger, each with its own event id and the whole rows;
//! - an UPDATE trigger fires only when its listened columns differ, compared
//!   as Hasura's Postgres trigger compares them: `row(OLD.c…) <> row(NEW.c…)`.
//!   That is true only when some column changed between two non-null
//!   values; a column that goes from NULL to a value (or back) while the
//!   others stay makes the comparison NULL, and Hasura fires nothing;
//! - all events of one write share `created_at` (the writing transaction's
//!   time, without an offset, as Hasura formats it) and go out at once, in
//!   no particular order;
//! - the trigger's headers, with `value_from_env` read from the harness's
//!   environment, and `delivery_info`;
//! - a non-2xx answer is retried up to `retry_conf.num_retries` times, after
//!   `Retry-After` when the service sends one, else `interval_sec`. Hasura's
//!   clock is compressed here: one second of its waiting is 10 ms.

use super::hasura_metadata::{EventTriggerDef, HeaderValue, event_trigger_defs};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// How much faster than Hasura the harness waits between retries.
const CLOCK_COMPRESSION: u32 = 100;

/// The Hasura that calls one test's service.
pub struct Hasura {
    triggers: Vec<EventTriggerDef>,
    /// The Hasura server's environment (`BUSFLOW_EVENTS_URL`, the secret).
    env: BTreeMap<String, String>,
    http: reqwest::Client,
    /// The time of the last write: every write is strictly later.
    clock: Mutex<DateTime<Utc>>,
}

/// One event Hasura delivered, and how it ended.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub trigger: String,
    pub event_id: String,
    pub payload: Value,
    /// POSTs it took (1 = answered 2xx at once).
    pub attempts: u32,
    /// Each POST's status and `Retry-After` seconds, in order.
    pub answers: Vec<(u16, Option<u64>)>,
    pub status: u16,
    pub body: Value,
}

/// What one write made Hasura deliver.
#[derive(Debug, Clone, Default)]
pub struct Write {
    pub deliveries: Vec<Delivery>,
}

impl Write {
    /// The triggers that fired, sorted.
    pub fn triggers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.deliveries.iter().map(|d| d.trigger.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// Every workflow the service started for this write (not the ones it
    /// found already started).
    pub fn started_workflows(&self) -> Vec<String> {
        self.deliveries
            .iter()
            .filter(|d| d.body["outcome"] == "started")
            .filter_map(|d| d.body["workflow_id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Panics unless every event was finally answered 2xx.
    pub fn assert_accepted(&self) -> &Self {
        let refused: Vec<String> = self
            .deliveries
            .iter()
            .filter(|d| !(200..300).contains(&d.status))
            .map(|d| format!("{} → {} {}", d.trigger, d.status, d.body))
            .collect();
        assert!(refused.is_empty(), "Hasura gave up on: {refused:#?}");
        self
    }
}

impl Hasura {
    /// Hasura with the shipped metadata, calling `events_url` with `secret`.
    pub fn new(events_url: &str, secret: &str) -> Self {
        let env = BTreeMap::from([
            ("BUSFLOW_EVENTS_URL".to_owned(), events_url.to_owned()),
            ("BUSFLOW_WEBHOOK_SECRET".to_owned(), secret.to_owned()),
        ]);
        Self {
            triggers: event_trigger_defs(),
            env,
            http: reqwest::Client::new(),
            clock: Mutex::new(Utc::now()),
        }
    }

    /// A row inserted into `table`.
    pub async fn insert(&self, table: &str, row: &Value) -> Write {
        self.write(table, "INSERT", None, row).await
    }

    /// `row` of `table` updated by `change`; `row` is left as the new row.
    pub async fn update(
        &self,
        table: &str,
        row: &mut Value,
        change: impl FnOnce(&mut Value),
    ) -> Write {
        let old = row.clone();
        change(row);
        self.write(table, "UPDATE", Some(&old), row).await
    }

    /// Delivers the same events again, ids and all: what Hasura does when an
    /// operator redelivers them, or when it lost the service's answer.
    pub async fn redeliver(&self, write: &Write) -> Write {
        let deliveries = write.deliveries.iter().map(|d| {
            let definition = self.definition(&d.trigger);
            self.deliver(definition, d.event_id.clone(), d.payload.clone())
        });
        Write {
            deliveries: futures::future::join_all(deliveries).await,
        }
    }

    fn definition(&self, name: &str) -> &EventTriggerDef {
        self.triggers
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no event trigger {name} in hasura/metadata"))
    }

    async fn write(&self, table: &str, op: &str, old: Option<&Value>, new: &Value) -> Write {
        assert!(
            self.triggers.iter().any(|t| t.table == table),
            "hasura/metadata has no event trigger on table {table}"
        );
        let created_at = {
            let mut clock = self.clock.lock().expect("clock");
            *clock = (*clock + chrono::Duration::milliseconds(1)).max(Utc::now());
            *clock
        };
        let firing: Vec<&EventTriggerDef> = self
            .triggers
            .iter()
            .filter(|t| t.table == table && fires(t, op, old, new))
            .collect();
        let deliveries = firing.into_iter().map(|trigger| {
            let event_id = Uuid::new_v4().to_string();
            let payload = json!({
                "id": event_id,
                "created_at": created_at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
                "trigger": {"name": trigger.name},
                "table": {"schema": "public", "name": table},
                "event": {
                    "op": op,
                    "data": {"old": old.cloned().unwrap_or(Value::Null), "new": new},
                    // A write through Hasura's GraphQL API; plain SQL sends null.
                    "session_variables": {"x-hasura-role": "admin"},
                    "trace_context": {"trace_id": format!("{:032x}", Uuid::new_v4().as_u128()),
                                      "span_id": format!("{:016x}", Uuid::new_v4().as_u128() as u64)},
                },
            });
            self.deliver(trigger, event_id, payload)
        });
        Write {
            deliveries: futures::future::join_all(deliveries).await,
        }
    }

    async fn deliver(
        &self,
        trigger: &EventTriggerDef,
        event_id: String,
        mut payload: Value,
    ) -> Delivery {
        let url = trigger
            .webhook_from_env
            .as_ref()
            .and_then(|env| self.env.get(env))
            .unwrap_or_else(|| panic!("{}: webhook env not set in the harness", trigger.name))
            .clone();
        let mut attempts = 0;
        let mut answers = Vec::new();
        loop {
            payload["delivery_info"] =
                json!({"current_retry": attempts, "max_retries": trigger.num_retries});
            let mut request = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("user-agent", "hasura-graphql-engine/v2.48.0")
                .body(payload.to_string());
            for (name, value) in &trigger.headers {
                let value = match value {
                    HeaderValue::Literal(v) => v.clone(),
                    HeaderValue::FromEnv(env) => self.env.get(env).cloned().unwrap_or_default(),
                };
                request = request.header(name, value);
            }
            attempts += 1;
            let response = request.send().await.expect("POST the event");
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            answers.push((status, retry_after.map(|d| d.as_secs())));
            if (200..300).contains(&status) || attempts > trigger.num_retries {
                return Delivery {
                    trigger: trigger.name.clone(),
                    event_id,
                    payload,
                    attempts,
                    answers,
                    status,
                    body,
                };
            }
            let wait = retry_after.unwrap_or(trigger.retry_interval) / CLOCK_COMPRESSION;
            tokio::time::sleep(wait).await;
        }
    }
}

/// Whether Hasura fires `trigger` for this write.
fn fires(trigger: &EventTriggerDef, op: &str, old: Option<&Value>, new: &Value) -> bool {
    match op {
        "INSERT" => trigger.insert,
        "UPDATE" => match (&trigger.update, old) {
            (Some(columns), Some(old)) => {
                let listened: Vec<&str> = if columns.iter().any(|c| c == "*") {
                    new.as_object()
                        .map(|row| row.keys().map(String::as_str).collect())
                        .unwrap_or_default()
                } else {
                    columns.iter().map(String::as_str).collect()
                };
                // SQL's row `<>`: some pair of non-null values differs.
                listened.iter().any(|c| {
                    let (was, is) = (
                        old.get(*c).unwrap_or(&Value::Null),
                        new.get(*c).unwrap_or(&Value::Null),
                    );
                    !was.is_null() && !is.is_null() && was != is
                })
            }
            _ => false,
        },
        _ => false,
    }
}
