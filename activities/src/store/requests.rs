//! Notification requests: what each notification workflow was asked to do.

use crate::model::{ContactId, TenantId};
use crate::triggers::Trigger;
use sqlx::PgPool;

#[derive(Debug, Clone)]
pub struct NotificationRequestRow {
    pub tenant_id: TenantId,
    pub workflow_id: String,
    pub contact_id: ContactId,
    pub trigger_event: Trigger,
    pub source_event_id: String,
    pub variables: sqlx::types::Json<serde_json::Value>,
}

/// Records the request once per workflow (retries and replays are no-ops).
pub async fn record(pool: &PgPool, request: &NotificationRequestRow) -> sqlx::Result<()> {
    sqlx::query!(
        "insert into notification_requests (tenant_id, workflow_id, contact_id, trigger_event, source_event_id, variables)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (tenant_id, workflow_id) do nothing",
        request.tenant_id.0,
        &request.workflow_id,
        request.contact_id.0,
        request.trigger_event as Trigger,
        &request.source_event_id,
        &request.variables.0
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(
    pool: &PgPool,
    tenant_id: TenantId,
    workflow_id: &str,
) -> sqlx::Result<Option<NotificationRequestRow>> {
    sqlx::query_as!(
        NotificationRequestRow,
        r#"select tenant_id as "tenant_id: TenantId", workflow_id,
                  contact_id as "contact_id: ContactId", trigger_event as "trigger_event: Trigger",
                  source_event_id, variables as "variables: sqlx::types::Json<serde_json::Value>"
             from notification_requests where tenant_id = $1 and workflow_id = $2"#,
        tenant_id.0,
        workflow_id
    )
    .fetch_optional(pool)
    .await
}

/// Takes on the notifications of many recipients of one event (sharing its
/// variables, taken from the first request) for the fan-out chunk `owner`: records each request unless another chunk (or a
/// workflow of its own) took it on first. Returns the contacts this chunk
/// owns, including those it took on in an earlier attempt. Contacts that no
/// longer exist are left out.
pub async fn take_on(
    pool: &PgPool,
    owner: &str,
    requests: &[NotificationRequestRow],
) -> sqlx::Result<Vec<ContactId>> {
    let Some(first) = requests.first() else {
        return Ok(Vec::new());
    };
    sqlx::query_scalar!(
        r#"with wanted as (
             select w.workflow_id, w.contact_id
               from unnest($2::text[], $3::uuid[]) as w(workflow_id, contact_id)
               join contacts c on c.tenant_id = $1 and c.id = w.contact_id),
         taken as (
             insert into notification_requests
                 (tenant_id, workflow_id, contact_id, trigger_event, source_event_id, variables, owner_workflow_id)
             select $1, workflow_id, contact_id, $5, $6, $4, $7 from wanted
             on conflict (tenant_id, workflow_id) do nothing
             returning contact_id)
         select contact_id as "contact_id!: ContactId" from taken
         union
         select r.contact_id from notification_requests r join wanted w on w.workflow_id = r.workflow_id
          where r.tenant_id = $1 and r.owner_workflow_id = $7"#,
        first.tenant_id.0,
        &requests
            .iter()
            .map(|r| r.workflow_id.clone())
            .collect::<Vec<_>>(),
        &requests.iter().map(|r| r.contact_id.0).collect::<Vec<_>>(),
        &first.variables.0,
        first.trigger_event as Trigger,
        &first.source_event_id,
        owner
    )
    .fetch_all(pool)
    .await
}
