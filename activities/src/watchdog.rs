//! The stuck-message watchdog's sweep. Messages QUEUED for longer than the
//! threshold are either still being worked on (their workflow is running,
//! e.g. retrying a provider outage) — reported: an error log naming tenant
//! and message, and one alert to the configured webhook — or orphaned (their
//! workflow ended without sending them) — reconciled: FAILED with a reason,
//! never left QUEUED forever.
//!
//! A message SENDING (claimed, its outcome unknown) may have reached the
//! person, so the watchdog never fails it: once its workflow has ended
//! without a receipt settling it, it is reported and alerted as unconfirmed.

use crate::model::{MessageId, TenantId};
use crate::workflow_state::{WorkflowState, workflow_state};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;
use temporalio_client::Client;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepInput {
    /// A message QUEUED longer than this is stuck.
    pub threshold_secs: u64,
}

/// What one sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Still QUEUED past the threshold, their workflow still running.
    pub stuck: Vec<StuckMessage>,
    /// Orphans marked FAILED.
    pub reconciled: usize,
    /// Claimed sends whose outcome nobody learnt, their workflow ended.
    #[serde(default)]
    pub unconfirmed: Vec<StuckMessage>,
    pub alerted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckMessage {
    pub tenant_id: TenantId,
    pub message_id: MessageId,
    pub workflow_id: Option<String>,
}

pub struct WatchdogActivities {
    pool: PgPool,
    temporal: Client,
    /// Where alerts go (a Slack/PagerDuty/Alertmanager-compatible webhook).
    alert_url: Option<String>,
}

impl WatchdogActivities {
    pub fn new(pool: PgPool, temporal: Client, alert_url: Option<String>) -> Self {
        Self {
            pool,
            temporal,
            alert_url,
        }
    }
}

#[activities]
impl WatchdogActivities {
    #[activity(name = "sweep_stuck_messages")]
    pub async fn sweep_stuck_messages(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: SweepInput,
    ) -> Result<SweepReport, ActivityError> {
        let queued =
            crate::store::messages::queued_longer_than(&self.pool, input.threshold_secs as f64)
                .await?;
        let mut report = SweepReport::default();
        for message in queued {
            let ended = self.owner_ended(&message).await?;
            match ended {
                Some(how) => {
                    let reason =
                        format!("stuck QUEUED: its workflow {how}; reconciled by the watchdog");
                    crate::store::messages::mark_failed(
                        &self.pool,
                        message.tenant_id,
                        message.message_id,
                        &reason,
                    )
                    .await?;
                    tracing::warn!(tenant.id = %message.tenant_id, message.id = %message.message_id, "{reason}");
                    report.reconciled += 1;
                }
                None => {
                    tracing::error!(
                        tenant.id = %message.tenant_id,
                        message.id = %message.message_id,
                        "message {} of tenant {} QUEUED for over {} s",
                        message.message_id,
                        message.tenant_id,
                        input.threshold_secs
                    );
                    report.stuck.push(message);
                }
            }
        }
        let claimed =
            crate::store::messages::claimed_longer_than(&self.pool, input.threshold_secs as f64)
                .await?;
        for message in claimed {
            let ended = self.owner_ended(&message).await?;
            if let Some(how) = ended {
                tracing::error!(
                    tenant.id = %message.tenant_id,
                    message.id = %message.message_id,
                    "message {} of tenant {} was claimed for sending and its outcome never became known; its workflow {how}",
                    message.message_id,
                    message.tenant_id,
                );
                report.unconfirmed.push(message);
            }
        }
        if !(report.stuck.is_empty() && report.unconfirmed.is_empty())
            && let Some(url) = &self.alert_url
        {
            report.alerted = alert(url, input.threshold_secs, &report).await;
        }
        Ok(report)
    }
}

impl WatchdogActivities {
    /// `None` while the message's workflow runs; how it ended otherwise.
    async fn owner_ended(&self, message: &StuckMessage) -> anyhow::Result<Option<String>> {
        match &message.workflow_id {
            Some(id) => self.workflow_ended(id).await,
            None => Ok(Some("no owning workflow".to_owned())),
        }
    }

    /// `None` while the workflow runs; how it ended otherwise.
    async fn workflow_ended(&self, workflow_id: &str) -> anyhow::Result<Option<String>> {
        Ok(match workflow_state(&self.temporal, workflow_id).await? {
            WorkflowState::Running => None,
            WorkflowState::Ended(how) => Some(format!("{workflow_id} ended ({how})")),
            WorkflowState::Missing => Some(format!("{workflow_id} does not exist")),
        })
    }
}

/// One POST per sweep; a failing alert sink is logged, never fatal.
async fn alert(url: &str, threshold_secs: u64, report: &SweepReport) -> bool {
    let body = serde_json::json!({
        "alert": "busflow_stuck_messages",
        "severity": "high",
        "summary": format!(
            "{} message(s) QUEUED for over {threshold_secs} s; {} claimed send(s) whose outcome is unknown",
            report.stuck.len(),
            report.unconfirmed.len()
        ),
        "messages": report.stuck,
        "unconfirmed": report.unconfirmed,
    });
    let sent = match crate::http::client(std::time::Duration::from_secs(10)) {
        Ok(http) => http
            .post(url)
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status()),
        Err(e) => Err(e),
    };
    match sent {
        Ok(_) => true,
        Err(e) => {
            tracing::error!("stuck-message alert not delivered: {e}");
            false
        }
    }
}
