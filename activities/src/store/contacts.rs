//! Contacts: who we message. One per person row of another context
//! (passenger profile, driver, vendor), or per sender an inbound message
//! named; identifiers are normalized but never unique, since people share
//! addresses.

use crate::identifiers::{EmailAddress, PhoneNumber};
use crate::model::{Channel, ContactId, ContactKind, TenantId};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A person row of another context: which one, by its kind's column
/// (`passenger_profile_id`, `driver_id`, `vendor_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonSource {
    pub kind: ContactKind,
    pub id: Uuid,
}

/// A person (passenger, driver, vendor) as this service keeps them,
/// identifiers already read. Fields that could not be read are in `problems`.
#[derive(Debug, Clone)]
pub struct PersonContact {
    pub tenant_id: TenantId,
    pub source: PersonSource,
    pub display_name: String,
    pub email: Option<EmailAddress>,
    pub phone: Option<PhoneNumber>,
    pub whatsapp: Option<PhoneNumber>,
    pub locale: Option<String>,
    pub time_zone: Option<String>,
    /// Field → why it was not used (never the value: it is personal data).
    pub problems: BTreeMap<String, String>,
}

impl PersonContact {
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Meta's business-scoped user id (`US.1349…`), for a WhatsApp user
    /// known without a number.
    #[serde(default)]
    pub whatsapp_user_id: Option<String>,
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

/// Creates or updates the contact of a person row, idempotently.
///
/// People share addresses (a parent books for a child), so an identifier
/// never merges two people: each source row is its own contact. A contact
/// created earlier from an inbound message (no source row yet) that shares
/// an identifier is adopted rather than duplicated: the oldest such one.
/// The identifier keys a person row owns (email, phone, whatsapp) are
/// replaced; the others (webchat, the WhatsApp user id) are learned from
/// inbound messages and kept.
pub async fn upsert_person(pool: &PgPool, contact: &PersonContact) -> sqlx::Result<ContactId> {
    let mut tx = pool.begin().await?;
    let identifiers = contact.identifiers();
    let problems = serde_json::to_value(&contact.problems).unwrap_or_default();
    // `$column`: the kind's person column (`RecipientRule::person_column`).
    macro_rules! upsert_by {
        ($column:literal) => {{
            let existing = sqlx::query_scalar!(
                "select id from contacts
                  where tenant_id = $1
                    and (" + $column + " = $2
                         or (passenger_profile_id is null and driver_id is null and vendor_id is null and (
                                identifiers->>'email' = $3::jsonb->>'email'
                             or identifiers->>'phone' = $3::jsonb->>'phone'
                             or identifiers->>'whatsapp' = $3::jsonb->>'whatsapp')))
                  order by (" + $column + " = $2) desc nulls last, created_at, id
                  limit 1
                  for update",
                contact.tenant_id.0,
                contact.source.id,
                &identifiers
            )
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some(id) => {
                    sqlx::query_scalar!(
                        "update contacts
                            set " + $column + " = $3, kind = $4, display_name = $5,
                                identifiers = (identifiers - 'email' - 'phone' - 'whatsapp') || $6,
                                locale = coalesce($7, locale), time_zone = coalesce($8, time_zone),
                                identifier_problems = $9, updated_at = now()
                          where tenant_id = $1 and id = $2
                          returning id",
                        contact.tenant_id.0,
                        id,
                        contact.source.id,
                        contact.source.kind as ContactKind,
                        &contact.display_name,
                        &identifiers,
                        contact.locale.as_deref(),
                        contact.time_zone.as_deref(),
                        &problems
                    )
                    .fetch_one(&mut *tx)
                    .await?
                }
                None => {
                    sqlx::query_scalar!(
                        "insert into contacts
                            (tenant_id, kind, " + $column + ", display_name, identifiers, locale, time_zone, identifier_problems)
                         values ($1, $2, $3, $4, $5, $6, $7, $8)
                         on conflict (tenant_id, " + $column + ") do update
                            set display_name = excluded.display_name,
                                identifiers = (contacts.identifiers - 'email' - 'phone' - 'whatsapp')
                                              || excluded.identifiers,
                                locale = coalesce(excluded.locale, contacts.locale),
                                time_zone = coalesce(excluded.time_zone, contacts.time_zone),
                                identifier_problems = excluded.identifier_problems,
                                updated_at = now()
                         returning id",
                        contact.tenant_id.0,
                        contact.source.kind as ContactKind,
                        contact.source.id,
                        &contact.display_name,
                        &identifiers,
                        contact.locale.as_deref(),
                        contact.time_zone.as_deref(),
                        &problems
                    )
                    .fetch_one(&mut *tx)
                    .await?
                }
            }
        }};
    }
    let id = match contact.source.kind {
        ContactKind::Customer => upsert_by!("passenger_profile_id"),
        ContactKind::Driver => upsert_by!("driver_id"),
        ContactKind::Vendor => upsert_by!("vendor_id"),
    };
    tx.commit().await?;
    Ok(ContactId(id))
}

/// The contact an email address reaches when no person row names one (an
/// invoice with only a `contact_email`): the oldest customer with that
/// address, or a new customer contact with it.
pub async fn customer_by_email(
    pool: &PgPool,
    tenant_id: TenantId,
    email: &EmailAddress,
) -> sqlx::Result<ContactId> {
    let mut tx = pool.begin().await?;
    // Two invoices to a new address at once must find one contact, not make two.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtextextended($1::text || '/email/' || $2, 0))",
        tenant_id as TenantId,
        email.as_str()
    )
    .execute(&mut *tx)
    .await?;
    let found = sqlx::query_scalar!(
        r#"select id as "id: ContactId" from contacts
            where tenant_id = $1 and kind = 'CUSTOMER' and identifiers ->> 'email' = $2
            order by created_at, id limit 1"#,
        tenant_id.0,
        email.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?;
    let id = match found {
        Some(id) => id,
        None => {
            sqlx::query_scalar!(
                r#"insert into contacts (tenant_id, kind, identifiers)
                   values ($1, 'CUSTOMER', jsonb_build_object('email', $2::text))
                   returning id as "id: ContactId""#,
                tenant_id.0,
                email.as_str()
            )
            .fetch_one(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    Ok(id)
}

/// `select_contacts!("tail", args…)`: the [`Contact`] columns of `contacts`,
/// then `tail`.
macro_rules! select_contacts {
    ($($tail:literal),+ $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Contact,
            r#"select id as "id: ContactId", tenant_id as "tenant_id: TenantId",
                      kind as "kind: ContactKind", display_name,
                      identifiers as "identifiers: sqlx::types::Json<Identifiers>",
                      passenger_profile_id, locale, time_zone, opted_out_channels
                 from contacts "# $(+ $tail)+
            $(, $arg)*
        )
    };
}

pub async fn get(
    pool: &PgPool,
    tenant_id: TenantId,
    id: ContactId,
) -> sqlx::Result<Option<Contact>> {
    select_contacts!("where tenant_id = $1 and id = $2", tenant_id.0, id.0)
        .fetch_optional(pool)
        .await
}

/// Many contacts of a tenant, in no particular order (missing ones left out).
pub async fn get_many(
    pool: &PgPool,
    tenant_id: TenantId,
    ids: &[ContactId],
) -> sqlx::Result<Vec<Contact>> {
    select_contacts!(
        "where tenant_id = $1 and id = any($2)",
        tenant_id.0,
        &ids.iter().map(|id| id.0).collect::<Vec<_>>()
    )
    .fetch_all(pool)
    .await
}

/// The contact of a person row (a passenger profile, a driver, a vendor).
pub async fn find_by_source(
    pool: &PgPool,
    tenant_id: TenantId,
    source: PersonSource,
) -> sqlx::Result<Option<Contact>> {
    let (tenant_id, id) = (tenant_id.0, source.id);
    // The kind's person column (`RecipientRule::person_column`).
    match source.kind {
        ContactKind::Customer => {
            select_contacts!(
                "where tenant_id = $1 and passenger_profile_id = $2",
                tenant_id,
                id
            )
            .fetch_optional(pool)
            .await
        }
        ContactKind::Driver => {
            select_contacts!("where tenant_id = $1 and driver_id = $2", tenant_id, id)
                .fetch_optional(pool)
                .await
        }
        ContactKind::Vendor => {
            select_contacts!("where tenant_id = $1 and vendor_id = $2", tenant_id, id)
                .fetch_optional(pool)
                .await
        }
    }
}

/// When the send window opens for each of these contacts
/// (`send_window_opens`): only those whose window is closed now.
pub async fn send_windows_opening(
    pool: &PgPool,
    tenant_id: TenantId,
    contact_ids: &[ContactId],
) -> sqlx::Result<Vec<(ContactId, chrono::DateTime<chrono::Utc>)>> {
    let rows = sqlx::query!(
        r#"select c.id as "id!: ContactId", w.opens as "opens!"
             from unnest($2::uuid[]) as c(id), send_window_opens($1, c.id) as w(opens)
            where w.opens is not null"#,
        tenant_id.0,
        &contact_ids.iter().map(|c| c.0).collect::<Vec<_>>()
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.opens)).collect())
}

/// `n` benchmark passengers of the tenant, numbered from `first` (each with
/// the phone `+5255` and that number); returns each one's (contact, passenger
/// profile).
pub async fn insert_bench_passengers(
    pool: &PgPool,
    tenant_id: TenantId,
    first: i32,
    n: i32,
) -> sqlx::Result<Vec<(ContactId, Uuid)>> {
    let rows = sqlx::query!(
        r#"insert into contacts (tenant_id, display_name, identifiers, passenger_profile_id, locale)
         select $1, 'Pasajero ' || i, jsonb_build_object('phone', '+5255' || lpad(i::text, 8, '0')),
                gen_random_uuid(), 'es-MX'
           from generate_series($2::int, $2::int + $3::int - 1) as i
         returning id as "id: ContactId", passenger_profile_id as "passenger_profile_id!""#,
        tenant_id.0,
        first,
        n
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.passenger_profile_id))
        .collect())
}
