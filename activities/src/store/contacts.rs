//! Contacts: who we message, keyed by tenant and normalized identifiers.

use crate::identifiers::{EmailAddress, PhoneNumber};
use crate::model::{Channel, ContactId, ContactKind, TenantId};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// A passenger profile as this service keeps it, identifiers already parsed.
#[derive(Debug, Clone)]
pub struct PassengerContact {
    pub tenant_id: TenantId,
    pub passenger_profile_id: Uuid,
    pub display_name: String,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub whatsapp: Option<PhoneNumber>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
}

impl PassengerContact {
    fn identifiers(&self) -> serde_json::Value {
        let mut ids = serde_json::Map::new();
        if let Some(email) = &self.email {
            ids.insert("email".into(), email.as_str().into());
        }
        if let Some(phone) = &self.phone {
            ids.insert("phone".into(), phone.as_str().into());
        }
        if let Some(whatsapp) = &self.whatsapp {
            ids.insert("whatsapp".into(), whatsapp.as_str().into());
        }
        ids.into()
    }
}

/// A contact row.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Contact {
    pub id: ContactId,
    pub tenant_id: TenantId,
    pub kind: ContactKind,
    pub display_name: String,
    pub identifiers: sqlx::types::Json<Identifiers>,
    pub passenger_profile_id: Option<Uuid>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    pub opted_out_channels: Vec<String>,
}

/// The normalized identifiers JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Identifiers {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub whatsapp: Option<String>,
    /// The webchat visitor id, once the contact has used the widget.
    #[serde(default)]
    pub webchat: Option<String>,
}

impl Contact {
    pub fn has_opted_out(&self, channel: Channel) -> bool {
        self.opted_out_channels
            .iter()
            .any(|c| c == channel.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpsertContactError {
    #[error("the {0} of this passenger profile already belongs to another contact of the tenant")]
    IdentifierTaken(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates or updates the contact of a passenger profile, idempotently.
///
/// A contact created earlier from an inbound message (no profile yet) that
/// shares an identifier is adopted rather than duplicated. The profile owns the
/// email/phone/whatsapp keys; other identifier keys are kept.
pub async fn upsert_passenger(
    pool: &PgPool,
    contact: &PassengerContact,
) -> Result<ContactId, UpsertContactError> {
    let mut tx = pool.begin().await?;
    let identifiers = contact.identifiers();
    let existing: Option<Uuid> = sqlx::query_scalar(
        "select id from contacts
          where tenant_id = $1
            and (passenger_profile_id = $2
                 or (passenger_profile_id is null and kind = 'CUSTOMER' and (
                        identifiers->>'email' = $3->>'email'
                     or identifiers->>'phone' = $3->>'phone'
                     or identifiers->>'whatsapp' = $3->>'whatsapp')))
          order by (passenger_profile_id = $2) desc nulls last, created_at
          limit 1
          for update",
    )
    .bind(contact.tenant_id)
    .bind(contact.passenger_profile_id)
    .bind(&identifiers)
    .fetch_optional(&mut *tx)
    .await?;

    let result = match existing {
        Some(id) => {
            sqlx::query_scalar(
                "update contacts
                    set passenger_profile_id = $3,
                        display_name = $4,
                        identifiers = (identifiers - 'email' - 'phone' - 'whatsapp') || $5,
                        locale = coalesce($6, locale),
                        time_zone = coalesce($7, time_zone),
                        updated_at = now()
                  where tenant_id = $1 and id = $2
                  returning id",
            )
            .bind(contact.tenant_id)
            .bind(id)
            .bind(contact.passenger_profile_id)
            .bind(&contact.display_name)
            .bind(&identifiers)
            .bind(&contact.locale)
            .bind(&contact.time_zone)
            .fetch_one(&mut *tx)
            .await
        }
        None => {
            sqlx::query_scalar(
                "insert into contacts
                    (tenant_id, kind, passenger_profile_id, display_name, identifiers, locale, time_zone)
                 values ($1, 'CUSTOMER', $2, $3, $4, $5, $6)
                 on conflict (tenant_id, passenger_profile_id) do update
                    set display_name = excluded.display_name,
                        identifiers = (contacts.identifiers - 'email' - 'phone' - 'whatsapp')
                                      || excluded.identifiers,
                        locale = coalesce(excluded.locale, contacts.locale),
                        time_zone = coalesce(excluded.time_zone, contacts.time_zone),
                        updated_at = now()
                 returning id",
            )
            .bind(contact.tenant_id)
            .bind(contact.passenger_profile_id)
            .bind(&contact.display_name)
            .bind(&identifiers)
            .bind(&contact.locale)
            .bind(&contact.time_zone)
            .fetch_one(&mut *tx)
            .await
        }
    };
    let id: Uuid = result.map_err(|e| match constraint_identifier(&e) {
        Some(which) => UpsertContactError::IdentifierTaken(which),
        None => UpsertContactError::Database(e),
    })?;
    tx.commit().await?;
    Ok(ContactId(id))
}

fn constraint_identifier(err: &sqlx::Error) -> Option<&'static str> {
    let constraint = err.as_database_error()?.constraint()?;
    match constraint {
        "contacts_email_uq" => Some("email"),
        "contacts_phone_uq" => Some("phone"),
        "contacts_whatsapp_uq" => Some("whatsapp number"),
        _ => None,
    }
}

const CONTACT_COLUMNS: &str = "id, tenant_id, kind, display_name, identifiers, passenger_profile_id, \
     locale, time_zone, opted_out_channels";

pub async fn get(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ContactId,
) -> sqlx::Result<Option<Contact>> {
    sqlx::query_as(&format!(
        "select {CONTACT_COLUMNS} from contacts where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn find_by_passenger_profile(
    pool: &PgPool,
    tenant_id: TenantId,
    passenger_profile_id: Uuid,
) -> sqlx::Result<Option<Contact>> {
    sqlx::query_as(&format!(
        "select {CONTACT_COLUMNS} from contacts where tenant_id = $1 and passenger_profile_id = $2"
    ))
    .bind(tenant_id)
    .bind(passenger_profile_id)
    .fetch_optional(pool)
    .await
}
