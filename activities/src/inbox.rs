//! The inbox's activities: what the snooze timer does when it fires.

use crate::model::TenantId;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WakeInput {
    pub tenant_id: TenantId,
    pub conversation_id: Uuid,
    /// The snooze time this timer was set for (Unix milliseconds).
    pub until_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WakeOutcome {
    Reopened,
    /// Someone changed the conversation since (resolved, re-snoozed, a message).
    Unchanged,
}

pub struct InboxActivities {
    pool: PgPool,
}

impl InboxActivities {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[activities]
impl InboxActivities {
    /// Reopens the conversation only if it is still SNOOZED until exactly
    /// `until_ms`: the compare-and-set makes a late timer harmless.
    #[activity(name = "wake_conversation")]
    pub async fn wake_conversation(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: WakeInput,
    ) -> Result<WakeOutcome, ActivityError> {
        let reopened = crate::store::conversations::wake(
            &self.pool,
            input.tenant_id,
            input.conversation_id,
            input.until_ms,
        )
        .await?;
        if reopened {
            tracing::info!(tenant.id = %input.tenant_id, conversation.id = %input.conversation_id, "snooze ended: conversation {} reopened", input.conversation_id);
        }
        Ok(if reopened {
            WakeOutcome::Reopened
        } else {
            WakeOutcome::Unchanged
        })
    }
}
