//! Notification requests: what each notification workflow was asked to do.

use crate::model::{ContactId, TenantId};
use crate::triggers::Trigger;
use sqlx::PgPool;

#[derive(Debug, Clone, sqlx::FromRow)]
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
    sqlx::query(
        "insert into notification_requests (tenant_id, workflow_id, contact_id, trigger_event, source_event_id, variables)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (tenant_id, workflow_id) do nothing",
    )
    .bind(request.tenant_id)
    .bind(&request.workflow_id)
    .bind(request.contact_id)
    .bind(request.trigger_event)
    .bind(&request.source_event_id)
    .bind(&request.variables)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn get(
    pool: &PgPool,
    tenant_id: TenantId,
    workflow_id: &str,
) -> sqlx::Result<Option<NotificationRequestRow>> {
    sqlx::query_as(
        "select tenant_id, workflow_id, contact_id, trigger_event, source_event_id, variables
           from notification_requests where tenant_id = $1 and workflow_id = $2",
    )
    .bind(tenant_id)
    .bind(workflow_id)
    .fetch_optional(pool)
    .await
}
