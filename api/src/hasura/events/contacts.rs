//! People rows of other contexts become contacts: `passenger_profile_upserted`,
//! `driver_upserted`, `vendor_upserted`. One row, one contact, whoever else
//! shares its email or phone. A field that cannot be read (a malformed phone)
//! is left out and recorded on the contact, with why; the rest of the row is
//! still used, so the email of a profile with a bad phone still reaches them.

use super::response::{EventResponse, Outcome, new_row};
use crate::AppState;
use crate::error::ApiError;
use crate::hasura::payload::EventTriggerPayload;
use busflow_activities::identifiers::{EmailAddress, PhoneNumber};
use busflow_activities::model::{ContactKind, TenantId};
use busflow_activities::store::{self, contacts::PersonContact, contacts::PersonSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A person row as Hasura sends it: `passenger_profiles`, `drivers` (both
/// with `full_name`) or `vendors` (`name`).
#[derive(Debug, Deserialize)]
struct PersonRow {
    id: Uuid,
    tenant_id: Uuid,
    #[serde(default, alias = "name")]
    full_name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    whatsapp_phone: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
}

fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Creates or updates the contact of the row.
pub(super) async fn upsert(
    app: &AppState,
    event: &EventTriggerPayload,
    kind: ContactKind,
) -> Result<EventResponse, ApiError> {
    let row: PersonRow = new_row(event)?;
    let tenant_id = TenantId(row.tenant_id);
    let settings = store::tenants::settings(&app.pool, tenant_id).await?;
    let mut problems = BTreeMap::new();
    let email = present(&row.email).and_then(|raw| {
        EmailAddress::parse(raw)
            .map_err(|e| problems.insert("email".to_owned(), e.to_string()))
            .ok()
    });
    let mut phone = |field: &str, raw: Option<&str>| {
        raw.and_then(|raw| {
            PhoneNumber::parse(raw, &settings.default_region)
                .map_err(|e| problems.insert(field.to_owned(), e.to_string()))
                .ok()
        })
    };
    let phone_number = phone("phone", present(&row.phone));
    let whatsapp = phone("whatsapp_phone", present(&row.whatsapp_phone));
    let contact = PersonContact {
        tenant_id,
        source: PersonSource { kind, id: row.id },
        display_name: present(&row.full_name).unwrap_or_default().to_owned(),
        email,
        phone: phone_number,
        whatsapp,
        locale: present(&row.locale).map(str::to_owned),
        time_zone: present(&row.time_zone).map(str::to_owned),
        problems: problems.clone(),
    };
    let contact_id = store::contacts::upsert_person(&app.pool, &contact).await?;
    if problems.is_empty() {
        tracing::info!(tenant.id = %tenant_id, contact.id = %contact_id, "upserted {kind} contact {contact_id} from row {}", row.id);
    } else {
        tracing::warn!(
            tenant.id = %tenant_id, contact.id = %contact_id,
            "upserted {kind} contact {contact_id} from row {} without its unusable {}",
            row.id,
            problems.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(EventResponse {
        outcome: Outcome::ContactUpserted,
        contact_id: Some(contact_id.0),
        problems,
        ..EventResponse::default()
    })
}
