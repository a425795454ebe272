//! A tenant whose world changes through Hasura (`support::hasura`): people,
//! trips, bookings and the rest written as their contexts write them, and
//! what reached each person counted at the provider (moto's recorded emails
//! and SMS, matched to our messages by the provider's id).

use super::TestApp;
use super::app::SECRET;
use super::hasura::{Hasura, Write};
use busflow_workflows::names::trip_reminder_workflow_id;
use busflow_workflows::trip_reminder::ReminderView;
use busflow_workflows::{BatchNotificationWorkflow, NotificationWorkflow, TripReminderWorkflow};
use chrono::{Duration as Span, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use temporalio_client::{WorkflowGetResultOptions, WorkflowQueryOptions};
use uuid::Uuid;

/// One notification as it reached a person.
#[derive(Debug, Clone)]
pub struct Received {
    pub trigger: String,
    /// `platform/<trigger>/<AUDIENCE>/<CHANNEL>/<locale>`.
    pub template_key: String,
    pub channel: String,
    pub text: String,
}

/// A tenant whose world changes through Hasura.
pub struct Story {
    pub app: TestApp,
    pub hasura: Hasura,
    /// Workflows the writes started, to wait for before counting.
    started: Vec<String>,
    refusals: Vec<(u16, Option<u64>)>,
}

impl Story {
    /// Email (SES on moto) and SMS (SNS on moto); no WhatsApp, so every
    /// chain falls to one of those two.
    pub async fn new() -> Self {
        let app = TestApp::spawn().await;
        app.add_email_account(true).await;
        app.add_sms_account().await;
        Self::of(app)
    }

    /// A story of `app` as it is (its accounts set up by the caller).
    pub fn of(app: TestApp) -> Self {
        let hasura = Hasura::new(&format!("{}/hasura/events", app.base_url), SECRET);
        Self {
            app,
            hasura,
            started: Vec::new(),
            refusals: Vec::new(),
        }
    }

    /// The workflows the writes started so far.
    #[allow(dead_code)] // the fault suite's
    pub fn started(&self) -> &[String] {
        &self.started
    }

    pub fn tenant(&self) -> Uuid {
        self.app.tenant_id.0
    }

    pub fn keep(&mut self, write: Write) -> Write {
        write.assert_accepted();
        self.started.extend(write.started_workflows());
        self.refusals.extend(
            write
                .deliveries
                .iter()
                .flat_map(|d| d.answers.iter().filter(|(status, _)| *status >= 300)),
        );
        write
    }

    /// Every non-2xx answer Hasura got so far: status and `Retry-After`.
    pub fn refusals(&self) -> Vec<(u16, Option<u64>)> {
        self.refusals.clone()
    }

    pub async fn insert(&mut self, table: &str, row: &Value) -> Write {
        let write = self.hasura.insert(table, row).await;
        self.keep(write)
    }

    pub async fn update(
        &mut self,
        table: &str,
        row: &mut Value,
        change: impl FnOnce(&mut Value),
    ) -> Write {
        let write = self.hasura.update(table, row, change).await;
        self.keep(write)
    }

    pub async fn redeliver(&mut self, write: &Write) -> Write {
        let again = self.hasura.redeliver(write).await;
        assert!(
            again.started_workflows().is_empty(),
            "a redelivered event started nothing new: {:?}",
            again.deliveries
        );
        self.keep(again)
    }

    /// A passenger profile (email and phone of their own), as its context writes it.
    pub async fn passenger(&mut self, name: &str, locale: &str) -> Value {
        let row = json!({
            "id": Uuid::new_v4(), "tenant_id": self.tenant(), "full_name": name,
            "email": self.app.recipient(&name.to_lowercase().replace(' ', ".")),
            "phone": self.app.unique_phone(), "whatsapp_phone": null,
            "locale": locale, "time_zone": null, "created_at": Utc::now().to_rfc3339(),
        });
        self.insert("passenger_profiles", &row).await;
        row
    }

    pub async fn driver(&mut self, name: &str) -> Value {
        let row = json!({
            "id": Uuid::new_v4(), "tenant_id": self.tenant(), "full_name": name,
            "phone": self.app.unique_phone(), "whatsapp_phone": null,
            "email": self.app.recipient(&name.to_lowercase().replace(' ', ".")), "locale": "es-MX",
        });
        self.insert("drivers", &row).await;
        row
    }

    pub async fn trip(&mut self, driver: Option<&Value>) -> Value {
        let row = json!({
            "id": Uuid::new_v4(), "tenant_id": self.tenant(),
            "departure_at": (Utc::now() + Span::days(3)).to_rfc3339(),
            "origin": "Ciudad de México", "destination": "Puebla", "route_name": "CDMX - Puebla",
            "status": "SCHEDULED", "delay_minutes": null,
            "driver_id": driver.map(|d| d["id"].clone()).unwrap_or(Value::Null),
        });
        self.insert("trips", &row).await;
        row
    }

    /// A booking made PENDING with a seat, then CONFIRMED with another seat
    /// in one write (which fires both the confirmation and the change).
    pub async fn book(&mut self, passenger: &Value, trip: &Value, reference: &str) -> Value {
        let mut row = json!({
            "id": Uuid::new_v4(), "tenant_id": self.tenant(), "trip_id": trip["id"],
            "passenger_profile_id": passenger["id"], "status": "PENDING",
            "booking_reference": reference, "seat": "13A",
        });
        self.insert("bookings", &row).await;
        let confirmed = self
            .update("bookings", &mut row, |b| {
                b["status"] = json!("CONFIRMED");
                b["seat"] = json!("14B");
            })
            .await;
        assert_eq!(
            confirmed.triggers(),
            ["booking_cancelled", "booking_changed", "booking_confirmed"]
        );
        row
    }

    /// Waits for every workflow the writes started to finish.
    pub async fn settle(&mut self) {
        let client = self.app.temporal().await;
        let mut failed = Vec::new();
        for id in std::mem::take(&mut self.started) {
            let wait = async {
                if id.starts_with("fanout/") {
                    client
                        .get_workflow_handle::<BatchNotificationWorkflow>(&id)
                        .get_result(WorkflowGetResultOptions::default())
                        .await
                        .map(|progress| format!("{progress:?}"))
                } else {
                    client
                        .get_workflow_handle::<NotificationWorkflow>(&id)
                        .get_result(WorkflowGetResultOptions::default())
                        .await
                        .map(|outcome| format!("{outcome:?}"))
                }
            };
            let result = tokio::time::timeout(Duration::from_secs(120), wait)
                .await
                .unwrap_or_else(|_| panic!("{id} did not finish within 120 s"));
            match result {
                Ok(outcome)
                    if outcome.contains("not_sent_reason: Some")
                        || outcome.contains("failed: 1") =>
                {
                    failed.push(format!("{id}: {outcome}"))
                }
                Ok(_) => {}
                Err(e) => failed.push(format!("{id}: {e:#}")),
            }
        }
        assert!(
            failed.is_empty(),
            "every notification reached its person: {failed:#?}"
        );
        let unfinished: Vec<(String, String, String)> = sqlx::query_as(
            "select trigger_event, channel, status from messages
              where tenant_id = $1 and direction = 'OUTBOUND' and status not in ('SENT', 'DELIVERED', 'READ')",
        )
        .bind(self.app.tenant_id)
        .fetch_all(&self.app.pool)
        .await
        .expect("messages");
        assert!(
            unfinished.is_empty(),
            "every notification went out: {unfinished:?}"
        );
    }

    /// What reached each person at the provider, by their address: the
    /// emails and SMS moto recorded, each matched to our message by the
    /// provider's id.
    pub async fn received(&self) -> BTreeMap<String, Vec<Received>> {
        let record = self.app.provider_record().await;
        let ours: BTreeMap<String, (String, String, String)> =
            sqlx::query_as::<_, (String, String, String, String)>(
                "select external_message_id, trigger_event, template_key, channel from messages
              where tenant_id = $1 and direction = 'OUTBOUND' and external_message_id is not null",
            )
            .bind(self.app.tenant_id)
            .fetch_all(&self.app.pool)
            .await
            .expect("messages")
            .into_iter()
            .map(|(id, trigger, key, channel)| (id, (trigger, key, channel)))
            .collect();
        let mut by_person: BTreeMap<String, Vec<Received>> = BTreeMap::new();
        let emails = record["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let sms = record["sns"]["SMS"].as_array().cloned().unwrap_or_default();
        let sent = emails
            .iter()
            .filter_map(|m| {
                let to = m["destinations"]["ToAddresses"][0].as_str()?.to_owned();
                Some((
                    m["id"].as_str()?.to_owned(),
                    to,
                    m["body"].as_str().unwrap_or_default().to_owned(),
                ))
            })
            .chain(sms.iter().filter_map(|m| {
                Some((
                    m["message_id"].as_str()?.to_owned(),
                    m["phone_number"].as_str()?.to_owned(),
                    m["message"].as_str().unwrap_or_default().to_owned(),
                ))
            }));
        for (provider_id, to, text) in sent {
            // Other tests share moto: only this tenant's messages are ours.
            let Some((trigger, template_key, channel)) = ours.get(&provider_id) else {
                continue;
            };
            by_person.entry(to).or_default().push(Received {
                trigger: trigger.clone(),
                template_key: template_key.clone(),
                channel: channel.clone(),
                text,
            });
        }
        by_person
    }

    /// Every notification one person received, whatever the channel: their
    /// email address and their phone.
    pub async fn received_by(&self, person: &Value) -> Vec<Received> {
        let all = self.received().await;
        let phone = busflow_activities::identifiers::PhoneNumber::parse(
            person["phone"].as_str().unwrap_or_default(),
            "MX",
        )
        .map(|p| p.to_string())
        .unwrap_or_default();
        let mut theirs: Vec<Received> =
            [person["email"].as_str().unwrap_or_default(), phone.as_str()]
                .iter()
                .flat_map(|address| all.get(*address).cloned().unwrap_or_default())
                .collect();
        theirs.sort_by(|a, b| a.trigger.cmp(&b.trigger).then(a.text.cmp(&b.text)));
        theirs
    }

    pub async fn reminder(&self, trip: &Value) -> ReminderView {
        let id: Uuid = serde_json::from_value(trip["id"].clone()).expect("trip id");
        let client = self.app.temporal().await;
        tokio::time::timeout(
            Duration::from_secs(30),
            client
                .get_workflow_handle::<TripReminderWorkflow>(&trip_reminder_workflow_id(
                    self.app.tenant_id,
                    id,
                ))
                .query(
                    TripReminderWorkflow::reminder,
                    (),
                    WorkflowQueryOptions::default(),
                ),
        )
        .await
        .expect("reminder answers")
        .expect("reminder query")
    }
}

pub fn triggers(received: &[Received]) -> Vec<&str> {
    received.iter().map(|r| r.trigger.as_str()).collect()
}
