//! Lifecycle stories, played the way Hasura delivers them from the shipped
//! metadata (`support::hasura`): every write fires every event trigger
//! Hasura would fire, each with its own event id and the whole rows. Each
//! story asserts the exact notifications every person received, counted at
//! the provider (moto's recorded emails and SMS), and that each went out.

use crate::support::TestApp;
use crate::support::app::SECRET;
use crate::support::hasura::{Hasura, Write};
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
struct Received {
    trigger: String,
    /// `platform/<trigger>/<AUDIENCE>/<CHANNEL>/<locale>`.
    template_key: String,
    channel: String,
    text: String,
}

/// A tenant whose world changes through Hasura.
struct Story {
    app: TestApp,
    hasura: Hasura,
    /// Workflows the writes started, to wait for before counting.
    started: Vec<String>,
}

impl Story {
    /// Email (SES on moto) and SMS (SNS on moto); no WhatsApp, so every
    /// chain falls to one of those two.
    async fn new() -> Self {
        let app = TestApp::spawn().await;
        app.add_email_account(true).await;
        app.add_sms_account().await;
        let hasura = Hasura::new(&format!("{}/hasura/events", app.base_url), SECRET);
        Self {
            app,
            hasura,
            started: Vec::new(),
        }
    }

    fn tenant(&self) -> Uuid {
        self.app.tenant_id.0
    }

    fn keep(&mut self, write: Write) -> Write {
        write.assert_accepted();
        self.started.extend(write.started_workflows());
        write
    }

    async fn insert(&mut self, table: &str, row: &Value) -> Write {
        let write = self.hasura.insert(table, row).await;
        self.keep(write)
    }

    async fn update(
        &mut self,
        table: &str,
        row: &mut Value,
        change: impl FnOnce(&mut Value),
    ) -> Write {
        let write = self.hasura.update(table, row, change).await;
        self.keep(write)
    }

    async fn redeliver(&mut self, write: &Write) -> Write {
        let again = self.hasura.redeliver(write).await;
        assert!(
            again.started_workflows().is_empty(),
            "a redelivered event started nothing new: {:?}",
            again.deliveries
        );
        self.keep(again)
    }

    /// A passenger profile (email and phone of their own), as its context writes it.
    async fn passenger(&mut self, name: &str, locale: &str) -> Value {
        let row = json!({
            "id": Uuid::new_v4(), "tenant_id": self.tenant(), "full_name": name,
            "email": self.app.recipient(&name.to_lowercase().replace(' ', ".")),
            "phone": self.app.unique_phone(), "whatsapp_phone": null,
            "locale": locale, "time_zone": null, "created_at": Utc::now().to_rfc3339(),
        });
        self.insert("passenger_profiles", &row).await;
        row
    }

    async fn driver(&mut self, name: &str) -> Value {
        let row = json!({
            "id": Uuid::new_v4(), "tenant_id": self.tenant(), "full_name": name,
            "phone": self.app.unique_phone(), "whatsapp_phone": null,
            "email": self.app.recipient(&name.to_lowercase().replace(' ', ".")), "locale": "es-MX",
        });
        self.insert("drivers", &row).await;
        row
    }

    async fn trip(&mut self, driver: Option<&Value>) -> Value {
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

    /// A booking made PENDING, then CONFIRMED with its seat in one write.
    async fn book(&mut self, passenger: &Value, trip: &Value, reference: &str) -> Value {
        let mut row = json!({
            "id": Uuid::new_v4(), "tenant_id": self.tenant(), "trip_id": trip["id"],
            "passenger_profile_id": passenger["id"], "status": "PENDING",
            "booking_reference": reference, "seat": null,
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
    async fn settle(&mut self) {
        let client = self.app.temporal().await;
        for id in std::mem::take(&mut self.started) {
            let wait = async {
                if id.starts_with("fanout/") {
                    let _ = client
                        .get_workflow_handle::<BatchNotificationWorkflow>(&id)
                        .get_result(WorkflowGetResultOptions::default())
                        .await;
                } else {
                    let _ = client
                        .get_workflow_handle::<NotificationWorkflow>(&id)
                        .get_result(WorkflowGetResultOptions::default())
                        .await;
                }
            };
            tokio::time::timeout(Duration::from_secs(120), wait)
                .await
                .unwrap_or_else(|_| panic!("{id} did not finish within 120 s"));
        }
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
    async fn received(&self) -> BTreeMap<String, Vec<Received>> {
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
    async fn received_by(&self, person: &Value) -> Vec<Received> {
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

    async fn reminder(&self, trip: &Value) -> ReminderView {
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

fn triggers(received: &[Received]) -> Vec<&str> {
    received.iter().map(|r| r.trigger.as_str()).collect()
}

#[tokio::test]
async fn a_trip_delayed_delayed_more_and_cancelled_tells_each_person_each_piece_of_news_once() {
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let john = story.passenger("John Smith", "en-US").await;
    let pedro = story.driver("Pedro Ruiz").await;
    let mut trip = story.trip(Some(&pedro)).await;
    story.book(&ana, &trip, "BF-ANA").await;
    story.book(&john, &trip, "BF-JOHN").await;

    // One write that fires six of the trip's triggers: delayed, and its
    // departure moved by the delay (a delay, not also a reschedule).
    let departure: chrono::DateTime<Utc> =
        serde_json::from_value(trip["departure_at"].clone()).expect("departure");
    let delayed = story
        .update("trips", &mut trip, |t| {
            t["status"] = json!("DELAYED");
            t["delay_minutes"] = json!(20);
            t["departure_at"] = json!((departure + Span::minutes(20)).to_rfc3339());
        })
        .await;
    assert_eq!(
        delayed.triggers(),
        [
            "trip_boarding",
            "trip_cancelled",
            "trip_completed",
            "trip_delayed",
            "trip_rescheduled",
            "trip_upserted"
        ]
    );
    // Five more minutes is not news; twenty-five more is.
    story
        .update("trips", &mut trip, |t| t["delay_minutes"] = json!(25))
        .await;
    let more = story
        .update("trips", &mut trip, |t| t["delay_minutes"] = json!(45))
        .await;
    // Hasura redelivers the whole write, and a column nobody listens to changes.
    story.redeliver(&more).await;
    let renamed = story
        .update("trips", &mut trip, |t| {
            t["route_name"] = json!("CDMX - Puebla Express")
        })
        .await;
    assert!(
        renamed.deliveries.is_empty(),
        "no trigger listens to route_name"
    );
    // Cancelled, and moved, in one write.
    story
        .update("trips", &mut trip, |t| {
            t["status"] = json!("CANCELLED");
            t["departure_at"] = json!((Utc::now() + Span::days(4)).to_rfc3339());
        })
        .await;
    story.settle().await;

    for (person, language) in [(&ana, "/es"), (&john, "/en")] {
        let received = story.received_by(person).await;
        assert_eq!(
            triggers(&received),
            [
                "booking_confirmed",
                "trip_cancelled",
                "trip_delayed",
                "trip_delayed"
            ],
            "{received:#?}"
        );
        let delays: Vec<&Received> = received
            .iter()
            .filter(|r| r.trigger == "trip_delayed")
            .collect();
        assert!(
            delays.iter().any(|r| r.text.contains("20"))
                && delays.iter().any(|r| r.text.contains("45")),
            "{delays:#?}"
        );
        assert!(
            received.iter().all(
                |r| r.template_key.contains("/CUSTOMER/") && r.template_key.ends_with(language)
            ),
            "{received:#?}"
        );
    }
    let driver = story.received_by(&pedro).await;
    assert_eq!(
        triggers(&driver),
        ["trip_cancelled", "trip_delayed", "trip_delayed"],
        "{driver:#?}"
    );
    assert!(
        driver.iter().all(|r| r.template_key.contains("/DRIVER/")),
        "the driver's own words: {driver:#?}"
    );
}

#[tokio::test]
async fn a_trip_that_boards_departs_and_completes_tells_boarding_and_completion_once() {
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let pedro = story.driver("Pedro Ruiz").await;
    let mut trip = story.trip(Some(&pedro)).await;
    story.book(&ana, &trip, "BF-ANA").await;
    for status in ["BOARDING", "DEPARTED", "COMPLETED"] {
        story
            .update("trips", &mut trip, |t| t["status"] = json!(status))
            .await;
    }
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(
        triggers(&received),
        ["booking_confirmed", "trip_boarding", "trip_completed"],
        "{received:#?}"
    );
    // Boarding is urgent and short: SMS; completion is a thank-you email.
    let channel_of = |trigger: &str| {
        received
            .iter()
            .find(|r| r.trigger == trigger)
            .map(|r| r.channel.clone())
    };
    assert_eq!(channel_of("trip_boarding").as_deref(), Some("SMS"));
    assert_eq!(channel_of("trip_completed").as_deref(), Some("EMAIL"));
    let driver = story.received_by(&pedro).await;
    assert_eq!(
        triggers(&driver),
        ["trip_boarding", "trip_completed"],
        "{driver:#?}"
    );
}

#[tokio::test]
async fn a_failed_payment_says_it_failed_and_a_paid_then_refunded_one_says_received_then_refunded()
{
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let payment = |amount: f64| {
        json!({"id": Uuid::new_v4(), "tenant_id": ana["tenant_id"], "booking_id": Uuid::new_v4(),
               "passenger_profile_id": ana["id"], "amount": amount, "currency": "MXN", "status": "PENDING"})
    };
    let mut failing = payment(450.0);
    story.insert("payments", &failing).await;
    story
        .update("payments", &mut failing, |p| p["status"] = json!("FAILED"))
        .await;

    let mut paid = payment(380.0);
    story.insert("payments", &paid).await;
    story
        .update("payments", &mut paid, |p| p["status"] = json!("SUCCEEDED"))
        .await;
    let mut refund = json!({"id": Uuid::new_v4(), "tenant_id": ana["tenant_id"], "payment_id": paid["id"],
                            "passenger_profile_id": ana["id"], "amount": 380.0, "currency": "MXN", "status": "PENDING"});
    story.insert("refunds", &refund).await;
    story
        .update("refunds", &mut refund, |r| r["status"] = json!("ISSUED"))
        .await;
    story
        .update("payments", &mut paid, |p| p["status"] = json!("REFUNDED"))
        .await;
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(
        triggers(&received),
        ["payment_failed", "payment_received", "refund_issued"],
        "{received:#?}"
    );
    let failed = received
        .iter()
        .find(|r| r.trigger == "payment_failed")
        .expect("failed");
    assert!(failed.text.contains("450"), "{}", failed.text);
    let received_text = received
        .iter()
        .find(|r| r.trigger == "payment_received")
        .expect("received");
    assert!(received_text.text.contains("380"), "{}", received_text.text);
}

#[tokio::test]
async fn an_invoice_issued_then_overdue_then_paid_reaches_its_passenger_or_its_contact_email() {
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let mut invoice = json!({"id": Uuid::new_v4(), "tenant_id": ana["tenant_id"], "number": "F-2026-0042",
                             "contact_email": ana["email"], "passenger_profile_id": ana["id"], "amount": 1200.5,
                             "currency": "MXN", "due_date": "2026-12-15", "status": "ISSUED"});
    story.insert("invoices", &invoice).await;
    story
        .update("invoices", &mut invoice, |i| i["status"] = json!("OVERDUE"))
        .await;
    story
        .update("invoices", &mut invoice, |i| i["status"] = json!("PAID"))
        .await;
    // A company's invoice names only an address.
    let company = story.app.recipient("facturas");
    let billed = json!({"id": Uuid::new_v4(), "tenant_id": ana["tenant_id"], "number": "F-2026-0043",
                        "contact_email": company, "passenger_profile_id": null, "amount": 5000,
                        "currency": "MXN", "due_date": null, "status": "ISSUED"});
    story.insert("invoices", &billed).await;
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(
        triggers(&received),
        ["invoice_issued", "invoice_overdue"],
        "{received:#?}"
    );
    let to_company = story.received().await.remove(&company).unwrap_or_default();
    assert_eq!(triggers(&to_company), ["invoice_issued"], "{to_company:#?}");
    assert!(
        to_company[0].text.contains("F-2026-0043"),
        "{}",
        to_company[0].text
    );
}

#[tokio::test]
async fn a_booking_moved_to_another_trip_then_cancelled_follows_the_passenger_between_trips() {
    let mut story = Story::new().await;
    let ana = story.passenger("Ana López", "es-MX").await;
    let mut first = story.trip(None).await;
    let mut second = story.trip(None).await;
    let mut booking = story.book(&ana, &first, "BF-MOVE").await;
    story
        .update("bookings", &mut booking, |b| {
            b["trip_id"] = second["id"].clone();
            b["seat"] = json!("3A");
        })
        .await;
    story.settle().await;
    assert_eq!(
        story.reminder(&first).await.passengers,
        0,
        "she left the first trip"
    );
    assert_eq!(
        story.reminder(&second).await.passengers,
        1,
        "and joined the second"
    );

    // The trip she left is delayed: not her news. The one she is on: hers.
    story
        .update("trips", &mut first, |t| {
            t["status"] = json!("DELAYED");
            t["delay_minutes"] = json!(30);
        })
        .await;
    story
        .update("trips", &mut second, |t| {
            t["status"] = json!("DELAYED");
            t["delay_minutes"] = json!(20);
        })
        .await;
    story.settle().await;
    story
        .update("bookings", &mut booking, |b| {
            b["status"] = json!("CANCELLED")
        })
        .await;
    story.settle().await;
    assert_eq!(
        story.reminder(&second).await.passengers,
        0,
        "cancelled: off the trip"
    );
    story
        .update("trips", &mut second, |t| t["delay_minutes"] = json!(60))
        .await;
    story.settle().await;

    let received = story.received_by(&ana).await;
    assert_eq!(
        triggers(&received),
        [
            "booking_cancelled",
            "booking_changed",
            "booking_confirmed",
            "trip_delayed"
        ],
        "{received:#?}"
    );
    let changed = received
        .iter()
        .find(|r| r.trigger == "booking_changed")
        .expect("changed");
    assert!(
        changed.text.contains("3A"),
        "the new seat: {}",
        changed.text
    );
}

#[tokio::test]
async fn a_booking_that_hasura_delivers_before_its_passenger_is_retried_then_redelivered_once_known()
 {
    let mut story = Story::new().await;
    let trip = story.trip(None).await;
    let ana = json!({
        "id": Uuid::new_v4(), "tenant_id": story.tenant(), "full_name": "Ana López",
        "email": story.app.recipient("ana"), "phone": null, "whatsapp_phone": null, "locale": "es-MX",
    });
    let booking = json!({
        "id": Uuid::new_v4(), "tenant_id": story.tenant(), "trip_id": trip["id"],
        "passenger_profile_id": ana["id"], "status": "CONFIRMED", "booking_reference": "BF-EARLY", "seat": "2C",
    });
    // The passenger's own write has not reached us: Hasura retries the
    // booking as the service asks (409, Retry-After), then gives up on it.
    let early = story.hasura.insert("bookings", &booking).await;
    let refused = &early.deliveries[0];
    assert_eq!(
        (refused.trigger.as_str(), refused.status),
        ("booking_confirmed", 409)
    );
    assert_eq!(
        refused.attempts, 11,
        "the first delivery and the metadata's 10 retries"
    );
    assert_eq!(refused.body["extensions"]["code"], "CONTACT_NOT_YET_KNOWN");

    story.insert("passenger_profiles", &ana).await;
    let redelivered = story.hasura.redeliver(&early).await;
    story.keep(redelivered);
    story.settle().await;
    assert_eq!(
        triggers(&story.received_by(&ana).await),
        ["booking_confirmed"]
    );
    assert_eq!(story.reminder(&trip).await.passengers, 1);
}
