//! Notification triggers that reach one person: the passenger, driver or
//! vendor the row names (`RecipientRule::Person`), or the driver of the
//! row's trip (`RecipientRule::TripDriver`). One path for all of them: decide
//! whether the write is news, find the contact, keep the booking's trip in
//! step, and start `notify/{tenant}/{event}/{contact}` once.

use super::bookings;
use super::response::{EventResponse, Outcome, new_row, row_write, with_local_times};
use crate::AppState;
use crate::error::ApiError;
use crate::hasura::payload::EventTriggerPayload;
use crate::temporal::{NotificationLabels, StartResult};
use busflow_activities::identifiers::EmailAddress;
use busflow_activities::model::{ContactId, ContactKind, TenantId};
use busflow_activities::store::{self, contacts::PersonSource};
use busflow_activities::triggers::{
    self, Decision, DomainTable, NotificationTrigger, RecipientRule, Trigger, status,
};
use busflow_workflows::NotificationRequest;
use busflow_workflows::names::notification_workflow_id;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// The columns every notified row has; the rest is read per rule.
#[derive(Debug, Deserialize)]
struct NotifiedRow {
    id: Uuid,
    tenant_id: Uuid,
    #[serde(default)]
    trip_id: Option<Uuid>,
}

/// Who the notification is for, found from the row.
struct Recipient {
    contact: ContactId,
    /// `passenger_profile:<id>`, `driver:<id>`…, for search in the UI.
    entity_ref: String,
}

pub(super) async fn notify_one(
    app: &AppState,
    event: &EventTriggerPayload,
    trigger: &NotificationTrigger,
) -> Result<EventResponse, ApiError> {
    let row: NotifiedRow = new_row(event)?;
    let data = event.event.data.new.clone().unwrap_or_default();
    let tenant_id = TenantId(row.tenant_id);
    // Who it is for is part of the row: a row without it is refused, news or not.
    let named = names(event, trigger, &data, row.trip_id)?;
    let write = row_write(event);
    let decision = trigger.decide(&write);
    // A booking that is or was confirmed moves passengers on and off trips,
    // whether or not this event is the one that notifies.
    let was_or_is_confirmed = [write.old, write.new]
        .iter()
        .flatten()
        .any(|r| r.get("status").and_then(Value::as_str) == Some(status::CONFIRMED));
    let membership = trigger.table == Some(DomainTable::Bookings) && was_or_is_confirmed;
    if let (Decision::Ignore(reason), false) = (&decision, membership) {
        return Ok(EventResponse::ignored(reason.clone()));
    }
    let recipient = match named {
        Named::Person(source) => person(app, tenant_id, source).await?,
        Named::Email(email) => {
            let contact = store::contacts::customer_by_email(&app.pool, tenant_id, &email).await?;
            Recipient {
                contact,
                entity_ref: format!("contact:{contact}"),
            }
        }
        Named::TripDriver(trip_id) => match trip_driver(app, tenant_id, trip_id).await? {
            Some(recipient) => recipient,
            None => {
                return Ok(EventResponse::ignored(format!(
                    "{}: trip {trip_id} has no driver",
                    trigger.trigger
                )));
            }
        },
    };
    if membership {
        bookings::record_booking(app, event, tenant_id, recipient.contact).await?;
    }
    if let Decision::Ignore(reason) = decision {
        return Ok(EventResponse::ignored(reason));
    }
    let trip = match row.trip_id {
        Some(trip_id) => store::trips::schedule(&app.pool, tenant_id, trip_id)
            .await?
            .map(|s| s.variables),
        None => None,
    };
    let mut variables = serde_json::json!({ trigger.row_key: with_local_times(app, tenant_id, data.clone()).await? });
    if trigger.carries_trip() {
        variables["trip"] = trip.unwrap_or_else(|| serde_json::json!({}));
    }
    let workflow_id = notification_workflow_id(tenant_id, &event.id, recipient.contact);
    let mut entity_refs = vec![
        format!("{}:{}", trigger.row_key, row.id),
        recipient.entity_ref,
    ];
    if let Some(trip) = row.trip_id {
        entity_refs.push(format!("trip:{trip}"));
    }
    let request = NotificationRequest {
        tenant_id,
        contact_id: recipient.contact,
        trigger_event: trigger.trigger,
        source_event_id: event.id.clone(),
        channels: None,
        variables,
        step_deadline_secs: app.config.step_deadline.as_secs(),
        replaces_message_id: None,
        reply: None,
    };
    let labels = NotificationLabels {
        entity_refs,
        // The UI's summary is not a payload the codec seals: ids only.
        summary: format!(
            "{} for {} {} → contact {}",
            trigger.trigger, trigger.row_key, row.id, recipient.contact
        ),
    };
    let result = app
        .temporal
        .start_notification(&workflow_id, request, labels)
        .await
        .map_err(|e| e.into_api_error("workflow not started, retry later"))?;
    Ok(EventResponse {
        outcome: match result {
            StartResult::Started => Outcome::Started,
            StartResult::AlreadyStarted => Outcome::AlreadyStarted,
        },
        workflow_id: Some(workflow_id),
        contact_id: Some(recipient.contact.0),
        ..EventResponse::default()
    })
}

/// Whom the row names.
enum Named {
    Person(PersonSource),
    /// An invoice without a passenger profile: its `contact_email`.
    Email(EmailAddress),
    /// The driver of this trip.
    TripDriver(Uuid),
}

/// Reads whom the row names (a person by its kind's column, else an
/// invoice's `contact_email`; or the row's trip), refusing a row without it.
fn names(
    event: &EventTriggerPayload,
    trigger: &NotificationTrigger,
    row: &Value,
    trip_id: Option<Uuid>,
) -> Result<Named, ApiError> {
    let invalid = |column: &str, why: String| {
        ApiError::bad_request(
            "INVALID_ROW",
            format!(
                "trigger '{}': event.data.new.{column} {why}",
                event.trigger.name
            ),
        )
    };
    match trigger.recipient {
        RecipientRule::Person(kind) => {
            let column = RecipientRule::person_column(kind);
            match row.get(column).filter(|v| !v.is_null()) {
                Some(named) => {
                    let id: Uuid = serde_json::from_value(named.clone())
                        .map_err(|e| invalid(column, format!(": {e}")))?;
                    Ok(Named::Person(PersonSource { kind, id }))
                }
                None => match row.get("contact_email").and_then(Value::as_str) {
                    Some(email) if kind == ContactKind::Customer => EmailAddress::parse(email)
                        .map(Named::Email)
                        .map_err(|e| invalid("contact_email", format!(": {e}"))),
                    _ => Err(invalid(
                        column,
                        "is required (the person to notify)".to_owned(),
                    )),
                },
            }
        }
        RecipientRule::TripDriver => trip_id
            .map(Named::TripDriver)
            .ok_or_else(|| invalid("trip_id", "is required (whose driver to notify)".to_owned())),
        other => Err(anyhow::anyhow!(
            "{} ({other:?}) is not a one-person trigger",
            trigger.trigger
        )
        .into()),
    }
}

/// The contact of the person the row names.
async fn person(
    app: &AppState,
    tenant_id: TenantId,
    source: PersonSource,
) -> Result<Recipient, ApiError> {
    let column = RecipientRule::person_column(source.kind);
    let contact = store::contacts::find_by_source(&app.pool, tenant_id, source)
        .await?
        .ok_or_else(|| not_yet_known(source.kind, column, source.id))?;
    Ok(Recipient {
        contact: contact.id,
        entity_ref: format!("{}:{}", column.trim_end_matches("_id"), source.id),
    })
}

/// The driver of the trip, as the trip's latest event names them; `None`
/// when the trip has no driver.
async fn trip_driver(
    app: &AppState,
    tenant_id: TenantId,
    trip_id: Uuid,
) -> Result<Option<Recipient>, ApiError> {
    let driver = store::trips::driver(&app.pool, tenant_id, trip_id)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                "TRIP_NOT_YET_KNOWN",
                format!(
                    "trip {trip_id} is not known yet (its {} event has not arrived); retry later",
                    Trigger::TripUpserted
                ),
            )
            .retry_after(30)
        })?;
    let Some(driver_id) = driver else {
        return Ok(None);
    };
    person(
        app,
        tenant_id,
        PersonSource {
            kind: ContactKind::Driver,
            id: driver_id,
        },
    )
    .await
    .map(|mut recipient| {
        recipient.entity_ref = format!("driver:{driver_id}");
        Some(recipient)
    })
}

fn not_yet_known(kind: ContactKind, column: &str, id: Uuid) -> ApiError {
    let upserted = triggers::contact_trigger(kind).map_or("person", Trigger::as_str);
    ApiError::conflict(
        "CONTACT_NOT_YET_KNOWN",
        format!(
            "no contact for {column} {id} yet (its {upserted} event has not arrived); retry later"
        ),
    )
    .retry_after(30)
}
