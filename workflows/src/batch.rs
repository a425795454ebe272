//! `BatchNotificationWorkflow` (`fanout/{tenant}/{source event id}`): one
//! event, many recipients — a delayed trip reaches every passenger and the
//! driver.
//!
//! Recipients come page by page (an explicit list, or a trip's bookings read
//! from Postgres); a page is cut into chunks of [`CHUNK_SIZE`], each a child
//! `FanoutChunkWorkflow` that sends its recipients' messages in a few large
//! activities (see `fanout_chunk`), all chunks of a page at once. Each
//! recipient's notification keeps the key a single notification would have
//! (`notify/{tenant}/{event}/{contact}`): the chunk that takes it on records
//! it, so a replayed event, a reset or a continue-as-new can never send twice.
//! After each page the workflow continues as new, carrying its cursor and
//! counts; the next run finds the next page, or an empty one and finishes. Progress is readable by the `progress`
//! query and shown in the memo.

use crate::fanout_chunk::{ChunkOutcome, ChunkRequest, FanoutChunkWorkflow};
use crate::labels;
use crate::names::{fanout_chunk_workflow_id, fanout_span_workflow_id, memo};
use crate::steps::postgres_step;
use busflow_activities::fanout::ChunkRecipients;
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::triggers::Trigger;
use busflow_activities::trips::{RecipientSpansInput, TripActivities};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::join_all;
use temporalio_sdk::{
    ChildWorkflowOptions, ChildWorkflowStartError, ContinueAsNewOptions, MemoValue,
    ParentClosePolicy, StartChildWorkflowExecutionFailedCause, WorkflowContext,
    WorkflowContextView, WorkflowIdReusePolicy, WorkflowResult,
};
use uuid::Uuid;

/// Recipients per chunk workflow.
pub const CHUNK_SIZE: usize = 500;
/// Most chunks per page (and per continue-as-new check).
const MOST_CHUNKS_PER_PAGE: usize = 40;

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
    /// Chunks (of [`CHUNK_SIZE`] recipients) sent at once: a page.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Each child's per-channel dispatch deadline.
    pub step_deadline_secs: u64,
    /// Where the previous run stopped (continue-as-new).
    #[serde(default)]
    pub progress: BatchProgress,
}

/// One chunk of a page, before it starts.
struct PageChunk {
    workflow_id: String,
    recipients: ChunkRecipients,
    /// Where the next page continues after this chunk.
    cursor: Option<ContactId>,
}

/// Recipients per page: `concurrency` chunks.
fn page_size(request: &BatchRequest) -> usize {
    request.concurrency.clamp(1, MOST_CHUNKS_PER_PAGE) * CHUNK_SIZE
}

fn yes() -> bool {
    true
}

fn default_concurrency() -> usize {
    20
}

/// How far the batch is; carried across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchProgress {
    /// Recipients handed to a chunk so far (explicit list: the next index).
    pub dispatched: u64,
    /// The last recipient of the last page (trip pages continue after it).
    pub cursor: Option<ContactId>,
    /// Recipients reached.
    pub delivered: u64,
    /// Recipients no channel could reach.
    pub not_sent: u64,
    /// Recipients no channel delivered to (every channel tried).
    pub failed: u64,
    /// Recipients not confirmed, of whom a send's outcome is unknown: they
    /// may have been reached.
    #[serde(default)]
    pub unconfirmed: u64,
    /// Chunk workflows started so far.
    #[serde(default)]
    pub chunks: u64,
    /// Recipients whose notification existed already (a replay or a reset).
    pub already_notified: u64,
    pub runs: u32,
    pub finished: bool,
}

#[workflow]
#[derive(Default)]
pub struct BatchNotificationWorkflow {
    progress: BatchProgress,
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
        let page = Self::next_page(ctx, &request).await?;
        let count: usize = page.iter().map(|c| c.recipients.expected()).sum();
        ctx.state_mut(|s| {
            s.progress.dispatched += count as u64;
            s.progress.cursor = page.last().and_then(|c| c.cursor).or(s.progress.cursor);
        });
        let shared: &WorkflowContext<Self> = ctx;
        let chunks = page.into_iter().map(|c| Self::chunk(shared, &request, c));
        for finished in join_all(chunks).await {
            finished?;
        }
        let now = ctx.state(|s| s.progress.clone());
        if count < page_size(&request) {
            let done = ctx.state_mut(|s| {
                s.progress.finished = true;
                s.progress.clone()
            });
            Self::show(ctx, &done);
            return Ok(done);
        }
        // A full page: the next page starts a new run, so one run's history
        // stays a page long however many recipients there are.
        Self::show(ctx, &now);
        let next = BatchRequest {
            progress: now,
            ..request.clone()
        };
        match ctx.continue_as_new(next, ContinueAsNewOptions::default())? {}
    }

    /// Counts so far.
    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> BatchProgress {
        self.progress.clone()
    }
}

impl BatchNotificationWorkflow {
    /// The next page's chunks. A trip's page is read as spans of its
    /// recipients (each chunk reads its own), so the page costs the history
    /// a few hundred bytes, not every passenger's id.
    async fn next_page(
        ctx: &mut WorkflowContext<Self>,
        request: &BatchRequest,
    ) -> WorkflowResult<Vec<PageChunk>> {
        let progress = ctx.state(|s| s.progress.clone());
        let chunks = request.concurrency.clamp(1, MOST_CHUNKS_PER_PAGE);
        match &request.recipients {
            Recipients::Contacts(all) => {
                let from = usize::try_from(progress.dispatched).unwrap_or(usize::MAX);
                let page: Vec<ContactId> = all
                    .iter()
                    .skip(from)
                    .take(page_size(request))
                    .copied()
                    .collect();
                Ok(page
                    .chunks(CHUNK_SIZE)
                    .map(|contacts| PageChunk {
                        workflow_id: fanout_chunk_workflow_id(ctx.workflow_id(), contacts),
                        recipients: ChunkRecipients::Contacts(contacts.to_vec()),
                        cursor: contacts.last().copied(),
                    })
                    .collect())
            }
            Recipients::TripPassengers {
                trip_id,
                include_driver,
            } => {
                let spans = ctx
                    .execute_local_activity(
                        TripActivities::trip_recipient_spans,
                        RecipientSpansInput {
                            tenant_id: request.tenant_id,
                            trip_id: *trip_id,
                            include_driver: *include_driver,
                            after: progress.cursor,
                            chunk_size: CHUNK_SIZE as u32,
                            chunks: chunks as u32,
                        },
                        postgres_step(
                            "read the next page of the trip's recipients",
                            Duration::from_secs(30),
                        ),
                    )
                    .await?;
                Ok(spans
                    .into_iter()
                    .map(|span| PageChunk {
                        workflow_id: fanout_span_workflow_id(ctx.workflow_id(), &span),
                        recipients: ChunkRecipients::Trip {
                            trip_id: *trip_id,
                            include_driver: *include_driver,
                            span,
                        },
                        cursor: Some(span.last),
                    })
                    .collect())
            }
        }
    }

    /// Sends one chunk of the page as a child workflow and adds its counts.
    /// A chunk id is the hash of its recipients (or of its span): the same
    /// chunk again (a reset) is found as existing, and a chunk cut
    /// differently takes on only the recipients no other chunk has.
    async fn chunk(
        ctx: &WorkflowContext<Self>,
        request: &BatchRequest,
        chunk: PageChunk,
    ) -> WorkflowResult<()> {
        let PageChunk {
            workflow_id,
            recipients,
            ..
        } = chunk;
        let expected = recipients.expected();
        ctx.state_mut(|s| s.progress.chunks += 1);
        let options = ChildWorkflowOptions::builder()
            .workflow_id(workflow_id)
            .parent_close_policy(ParentClosePolicy::Abandon)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .search_attributes(labels::pending(
                request.tenant_id,
                request.trigger_event,
                &request.entity_refs,
            ))
            .static_summary(format!(
                "{} → {} recipients (fan-out {})",
                request.trigger_event, expected, request.source_event_id
            ))
            .build();
        let chunk = ChunkRequest {
            tenant_id: request.tenant_id,
            trigger_event: request.trigger_event,
            source_event_id: request.source_event_id.clone(),
            variables: request.variables.clone(),
            recipients,
            entity_refs: request.entity_refs.clone(),
            step_deadline_secs: request.step_deadline_secs,
        };
        match ctx
            .start_child_workflow(FanoutChunkWorkflow::run, chunk, options)
            .await
        {
            Ok(child) => {
                let outcome: ChunkOutcome = child.result().await?;
                ctx.state_mut(|s| {
                    s.progress.delivered += outcome.delivered;
                    s.progress.not_sent += outcome.not_sent;
                    s.progress.failed += outcome.failed;
                    s.progress.unconfirmed += outcome.unconfirmed;
                    s.progress.already_notified += outcome.already_notified;
                });
            }
            Err(ChildWorkflowStartError::StartFailed {
                cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists,
                ..
            }) => {
                ctx.state_mut(|s| s.progress.already_notified += expected as u64);
            }
            Err(other) => return Err(other.into()),
        }
        Ok(())
    }

    /// The counts in the memo and the UI's current details.
    fn show(ctx: &WorkflowContext<Self>, progress: &BatchProgress) {
        let line = format!(
            "{} recipients in {} chunks: {} delivered, {} not sent, {} failed, {} unconfirmed, {} already notified{}",
            progress.dispatched,
            progress.chunks,
            progress.delivered,
            progress.not_sent,
            progress.failed,
            progress.unconfirmed,
            progress.already_notified,
            if progress.finished { " (finished)" } else { "" }
        );
        ctx.set_current_details(line.clone());
        // A memo the server refuses would only lose the display, not the batch.
        let _ = ctx.upsert_memo([(memo::PROGRESS, Some(MemoValue::new(line)))]);
    }
}
