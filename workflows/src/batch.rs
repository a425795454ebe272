//! `BatchNotificationWorkflow` (`fanout/{tenant}/{source event id}`): one
//! event, many recipients — a delayed trip reaches every passenger and the
//! driver. Each recipient is a child `NotificationWorkflow` under the same id
//! a single notification would have (`notify/{tenant}/{event}/{contact}`), so
//! a replayed event, a reset or a continue-as-new can never send twice.
//!
//! Recipients come page by page (an explicit list, or a trip's bookings read
//! from Postgres); within a page at most `concurrency` children run at once,
//! each lane taking the next recipient when its child ends. After a page the
//! workflow continues as new once its history grows, carrying its cursor and
//! counts. Progress is readable by the `progress` query and shown in the memo.

use crate::names::{memo, notification_workflow_id, search_attributes as sa};
use crate::notification::{NotificationRequest, NotificationWorkflow};
use crate::steps::postgres_step;
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::triggers::Trigger;
use busflow_activities::trips::{RecipientsPageInput, TripActivities};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;
use temporalio_common::search_attributes::SearchAttributes;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{
    ChildWorkflowOptions, ChildWorkflowStartError, ContinueAsNewOptions, MemoValue,
    ParentClosePolicy, StartChildWorkflowExecutionFailedCause, WorkflowContext,
    WorkflowContextView, WorkflowIdReusePolicy, WorkflowResult,
};
use uuid::Uuid;

/// Recipients per page (and per continue-as-new check).
const PAGE_SIZE: usize = 500;
/// Past this many history events the next page starts in a new run.
const HISTORY_BUDGET: u32 = 4_000;

/// Who the batch goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recipients {
    /// An explicit list (a trip reminder's passengers).
    Contacts(Vec<ContactId>),
    /// Everyone with a confirmed booking on the trip, and (unless told
    /// otherwise: an incident reaches its driver by a trigger of its own)
    /// the trip's driver.
    TripPassengers {
        trip_id: Uuid,
        #[serde(default = "yes")]
        include_driver: bool,
    },
}

/// One event for many recipients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchRequest {
    pub tenant_id: TenantId,
    pub trigger_event: Trigger,
    pub source_event_id: String,
    /// Template variables shared by every recipient, e.g. `{"trip": {...}}`.
    pub variables: serde_json::Value,
    pub recipients: Recipients,
    /// `trip:<id>`…, set on every child for search.
    #[serde(default)]
    pub entity_refs: Vec<String>,
    /// Children running at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Each child's per-channel dispatch deadline.
    pub step_deadline_secs: u64,
    /// Where the previous run stopped (continue-as-new).
    #[serde(default)]
    pub progress: BatchProgress,
}

fn yes() -> bool {
    true
}

fn default_concurrency() -> usize {
    100
}

/// How far the batch is; carried across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProgress {
    /// Recipients handed to a child so far (explicit list: the next index).
    pub dispatched: u64,
    /// The last recipient of the last page (trip pages continue after it).
    pub cursor: Option<ContactId>,
    /// Children that reached their recipient.
    pub delivered: u64,
    /// Children that found no channel to send on.
    pub not_sent: u64,
    /// Children that failed (every channel tried).
    pub failed: u64,
    /// Recipients whose notification existed already (a replay or a reset).
    pub already_notified: u64,
    pub runs: u32,
    pub finished: bool,
}

#[workflow]
#[derive(Default)]
pub struct BatchNotificationWorkflow {
    progress: BatchProgress,
    queue: VecDeque<ContactId>,
}

#[workflow_methods]
impl BatchNotificationWorkflow {
    #[run(name = "BatchNotificationWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: BatchRequest,
    ) -> WorkflowResult<BatchProgress> {
        let mut progress = request.progress.clone();
        progress.runs += 1;
        ctx.state_mut(|s| s.progress = progress.clone());
        loop {
            let page = Self::next_page(ctx, &request).await?;
            if page.is_empty() {
                let done = ctx.state_mut(|s| {
                    s.progress.finished = true;
                    s.progress.clone()
                });
                Self::show(ctx, &done);
                return Ok(done);
            }
            let last = page.last().copied();
            let count = page.len() as u64;
            ctx.state_mut(|s| {
                s.queue.extend(page);
                s.progress.dispatched += count;
                s.progress.cursor = last;
            });
            let lanes = request.concurrency.clamp(1, PAGE_SIZE);
            let shared: &WorkflowContext<Self> = ctx;
            for finished in join_all((0..lanes).map(|_| Self::lane(shared, &request))).await {
                finished?;
            }
            let now = ctx.state(|s| s.progress.clone());
            Self::show(ctx, &now);
            if ctx.history_length() > HISTORY_BUDGET || ctx.continue_as_new_suggested() {
                let next = BatchRequest {
                    progress: now,
                    ..request.clone()
                };
                ctx.continue_as_new(next, ContinueAsNewOptions::default())?;
            }
        }
    }

    /// Counts so far.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> BatchProgress {
        self.progress.clone()
    }
}

impl BatchNotificationWorkflow {
    async fn next_page(
        ctx: &mut WorkflowContext<Self>,
        request: &BatchRequest,
    ) -> WorkflowResult<Vec<ContactId>> {
        let progress = ctx.state(|s| s.progress.clone());
        match &request.recipients {
            Recipients::Contacts(all) => {
                let from = usize::try_from(progress.dispatched).unwrap_or(usize::MAX);
                Ok(all.iter().skip(from).take(PAGE_SIZE).copied().collect())
            }
            Recipients::TripPassengers {
                trip_id,
                include_driver,
            } => Ok(ctx
                .execute_local_activity(
                    TripActivities::trip_recipients_page,
                    RecipientsPageInput {
                        tenant_id: request.tenant_id,
                        trip_id: *trip_id,
                        include_driver: *include_driver,
                        after: progress.cursor,
                        limit: PAGE_SIZE as i64,
                    },
                    postgres_step(
                        "read the next page of the trip's recipients",
                        Duration::from_secs(30),
                    ),
                )
                .await?),
        }
    }

    /// Takes recipients off the queue one at a time and notifies each, until
    /// the queue is empty.
    async fn lane(ctx: &WorkflowContext<Self>, request: &BatchRequest) -> WorkflowResult<()> {
        while let Some(contact) = ctx.state_mut(|s| s.queue.pop_front()) {
            let workflow_id =
                notification_workflow_id(request.tenant_id, &request.source_event_id, contact);
            let options = ChildWorkflowOptions::builder()
                .workflow_id(workflow_id)
                .parent_close_policy(ParentClosePolicy::Abandon)
                .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
                .search_attributes(SearchAttributes::new([
                    sa::TENANT_ID.value_set(request.tenant_id.to_string()),
                    sa::TRIGGER_EVENT.value_set(request.trigger_event.to_string()),
                    sa::NOTIFICATION_STATUS.value_set("PENDING".to_owned()),
                    sa::ENTITY_REFS.value_set(request.entity_refs.clone()),
                ]))
                .static_summary(format!(
                    "{} → contact {contact} (batch {})",
                    request.trigger_event, request.source_event_id
                ))
                .build();
            let child_request = NotificationRequest {
                tenant_id: request.tenant_id,
                contact_id: contact,
                trigger_event: request.trigger_event,
                source_event_id: request.source_event_id.clone(),
                channels: None,
                variables: request.variables.clone(),
                step_deadline_secs: request.step_deadline_secs,
                replaces_message_id: None,
                reply: None,
            };
            match ctx
                .start_child_workflow(NotificationWorkflow::run, child_request, options)
                .await
            {
                Ok(child) => {
                    let outcome = child.result().await;
                    ctx.state_mut(|s| match outcome {
                        Ok(o) if o.delivered.is_some() => s.progress.delivered += 1,
                        Ok(_) => s.progress.not_sent += 1,
                        Err(_) => s.progress.failed += 1,
                    });
                }
                Err(ChildWorkflowStartError::StartFailed {
                    cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists,
                    ..
                }) => {
                    ctx.state_mut(|s| s.progress.already_notified += 1);
                }
                Err(other) => return Err(other.into()),
            }
        }
        Ok(())
    }

    /// The counts in the memo and the UI's current details.
    fn show(ctx: &WorkflowContext<Self>, progress: &BatchProgress) {
        let line = format!(
            "{} recipients: {} delivered, {} not sent, {} failed, {} already notified{}",
            progress.dispatched,
            progress.delivered,
            progress.not_sent,
            progress.failed,
            progress.already_notified,
            if progress.finished { " (finished)" } else { "" }
        );
        ctx.set_current_details(line.clone());
        // A memo the server refuses would only lose the display, not the batch.
        let _ = ctx.upsert_memo([(memo::PROGRESS, Some(MemoValue::new(line)))]);
    }
}
