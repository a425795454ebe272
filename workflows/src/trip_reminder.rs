//! `TripReminderWorkflow` (`trip-reminder/{tenant}/{trip}`): the entity
//! workflow of one trip's pre-departure reminder, fed by signal-with-start
//! from Hasura events. `trip_changed` carries the trip (departure, status),
//! `booking_changed` adds or removes a passenger; both are versioned by the
//! event's time, so a late or replayed event changes nothing.
//!
//! A durable timer runs to departure minus the tenant's lead time (24 h by
//! default); a new departure resets it, an ended trip (cancelled, departed)
//! ends the workflow. When it fires, one `BatchNotificationWorkflow` notifies
//! every passenger; a passenger booked after that (inside the lead time) is
//! reminded at once. Reminder notifications are keyed by trip, departure and
//! contact (`notify/{tenant}/trip-reminder-{trip}-{departure ms}/{contact}`):
//! a replay never sends twice, a new departure time reminds again. The
//! passenger list lives in workflow state and survives continue-as-new.

use crate::batch::{BatchNotificationWorkflow, BatchProgress, BatchRequest, Recipients};
use crate::clock::unix_ms;
use crate::labels;
use crate::names::{fanout_workflow_id, memo, notification_workflow_id, trip_reminder_event_id};
use crate::notification::{NotificationRequest, NotificationWorkflow};
use crate::steps::postgres_step;
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::store::trips::{DEFAULT_REMINDER_LEAD_MS, TripSchedule};
use busflow_activities::triggers::Trigger;
use busflow_activities::trips::{TripActivities, TripRef};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use temporalio_common::search_attributes::SearchAttributes;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::select;
use temporalio_sdk::{
    ChildWorkflowOptions, ChildWorkflowStartError, ContinueAsNewOptions, MemoValue,
    ParentClosePolicy, StartChildWorkflowExecutionFailedCause, SyncWorkflowContext, TimerResult,
    WorkflowContext, WorkflowContextView, WorkflowIdReusePolicy, WorkflowResult,
    WorkflowTermination,
};
use uuid::Uuid;

/// Past this many history events the workflow continues as new.
const HISTORY_BUDGET: u32 = 2_000;
/// A reminder that never learns its trip's departure gives up after this.
const IDLE_LIMIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Which trip; `carried` is the previous run's state (continue-as-new).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TripReminderRequest {
    pub tenant_id: TenantId,
    pub trip_id: Uuid,
    /// Each reminder's per-channel dispatch deadline.
    pub step_deadline_secs: u64,
    #[serde(default)]
    pub carried: Option<TripReminderState>,
}

/// A booking's latest known state on this trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingChange {
    pub booking_id: Uuid,
    pub contact_id: ContactId,
    pub confirmed: bool,
    /// The event's time (Unix ms): an older change never overrides a newer one.
    pub version_ms: i64,
}

/// Everything the reminder knows; carried across runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TripReminderState {
    pub trip: Option<TripSchedule>,
    pub lead_ms: Option<i64>,
    pub bookings: BTreeMap<Uuid, BookingChange>,
    /// The departure the reminders went out for, and to whom.
    pub reminded_for: Option<i64>,
    pub reminded: BTreeSet<ContactId>,
}

impl TripReminderState {
    fn apply_trip(&mut self, trip: TripSchedule) -> bool {
        let newer = self
            .trip
            .as_ref()
            .is_none_or(|known| trip.version_ms >= known.version_ms && *known != trip);
        if newer {
            self.trip = Some(trip);
        }
        newer
    }

    fn apply_booking(&mut self, change: BookingChange) -> bool {
        let newer = self
            .bookings
            .get(&change.booking_id)
            .is_none_or(|known| change.version_ms >= known.version_ms && *known != change);
        if newer {
            self.bookings.insert(change.booking_id, change);
        }
        newer
    }

    /// Contacts with a confirmed booking, once each.
    fn passengers(&self) -> BTreeSet<ContactId> {
        self.bookings
            .values()
            .filter(|b| b.confirmed)
            .map(|b| b.contact_id)
            .collect()
    }
}

/// What ops see in the `reminder` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderView {
    pub departure_at_ms: Option<i64>,
    pub fires_at_ms: Option<i64>,
    pub status: Option<String>,
    pub passengers: usize,
    pub reminded_for: Option<i64>,
    pub reminded: usize,
}

/// How the reminder ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReminderOutcome {
    /// The trip left; `reminded` passengers got a reminder for its departure.
    Departed { reminded: usize },
    /// The trip ended before departing (cancelled…), with its status.
    Ended { status: String },
    /// No departure time arrived within the idle limit.
    NoDeparture,
}

#[workflow]
#[derive(Default)]
pub struct TripReminderWorkflow {
    state: TripReminderState,
    /// Bumped by every applied change: the main loop re-plans on it.
    changes: u64,
}

#[workflow_methods]
impl TripReminderWorkflow {
    #[run(name = "TripReminderWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: TripReminderRequest,
    ) -> WorkflowResult<ReminderOutcome> {
        Self::restore(ctx, &request).await?;
        loop {
            if ctx.history_length() > HISTORY_BUDGET || ctx.continue_as_new_suggested() {
                let carried = ctx.state(|s| s.state.clone());
                ctx.continue_as_new(
                    TripReminderRequest {
                        carried: Some(carried),
                        ..request.clone()
                    },
                    ContinueAsNewOptions::default(),
                )?;
            }
            let (state, seen) = ctx.state(|s| (s.state.clone(), s.changes));
            Self::show(ctx, &state);
            let lead_ms = state.lead_ms.unwrap_or(DEFAULT_REMINDER_LEAD_MS);
            let now_ms = unix_ms(ctx.workflow_time()).unwrap_or(0);
            let departure = match &state.trip {
                Some(trip) if trip.ended() => {
                    return Ok(ReminderOutcome::Ended {
                        status: trip.status.clone(),
                    });
                }
                Some(trip) => trip.departure_at_ms,
                None => None,
            };
            let Some(departure_ms) = departure else {
                if !Self::changed_within(ctx, seen, IDLE_LIMIT).await? {
                    return Ok(ReminderOutcome::NoDeparture);
                }
                continue;
            };
            if now_ms >= departure_ms {
                return Ok(ReminderOutcome::Departed {
                    reminded: if state.reminded_for == Some(departure_ms) {
                        state.reminded.len()
                    } else {
                        0
                    },
                });
            }
            let fires_at = departure_ms - lead_ms;
            if now_ms >= fires_at {
                Self::remind(ctx, &request, &state, departure_ms).await?;
                if ctx.state(|s| s.changes) != seen {
                    continue;
                }
                Self::changed_within(ctx, seen, millis(departure_ms - now_ms)).await?;
            } else {
                Self::changed_within(ctx, seen, millis(fires_at - now_ms)).await?;
            }
        }
    }

    /// The trip as its latest event describes it.
    #[signal(name = "trip_changed")]
    pub fn trip_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, trip: TripSchedule) {
        if self.state.apply_trip(trip) {
            self.changes += 1;
        }
    }

    /// A booking on this trip was confirmed or cancelled.
    #[signal(name = "booking_changed")]
    pub fn booking_changed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, change: BookingChange) {
        if self.state.apply_booking(change) {
            self.changes += 1;
        }
    }

    /// When the reminder fires and for how many passengers.
    #[query(name = "reminder")]
    pub fn reminder(&self, _ctx: &WorkflowContextView) -> ReminderView {
        view(&self.state)
    }
}

impl TripReminderWorkflow {
    /// Starts from the previous run's state, or from what Postgres knows
    /// (a first run, or a trip whose earlier reminder already ended).
    /// Signals delivered with the start are newer and stay applied.
    async fn restore(
        ctx: &mut WorkflowContext<Self>,
        request: &TripReminderRequest,
    ) -> WorkflowResult<()> {
        let base = match &request.carried {
            Some(carried) => carried.clone(),
            None => {
                let seed = ctx
                    .execute_local_activity(
                        TripActivities::load_trip_reminder,
                        TripRef {
                            tenant_id: request.tenant_id,
                            trip_id: request.trip_id,
                        },
                        postgres_step("read the trip and its bookings", Duration::from_secs(30)),
                    )
                    .await?;
                let mut base = TripReminderState {
                    lead_ms: Some(seed.lead_ms),
                    ..TripReminderState::default()
                };
                if let Some(trip) = seed.schedule {
                    base.apply_trip(trip);
                }
                for p in seed.passengers {
                    base.apply_booking(BookingChange {
                        booking_id: p.booking_id,
                        contact_id: p.contact_id,
                        confirmed: true,
                        version_ms: p.version_ms,
                    });
                }
                base
            }
        };
        ctx.state_mut(|s| {
            let signalled = std::mem::replace(&mut s.state, base);
            if let Some(trip) = signalled.trip {
                s.state.apply_trip(trip);
            }
            for change in signalled.bookings.into_values() {
                s.state.apply_booking(change);
            }
        });
        Ok(())
    }

    /// Waits for a change, at most `limit`; true if something changed.
    async fn changed_within(
        ctx: &mut WorkflowContext<Self>,
        seen: u64,
        limit: Duration,
    ) -> WorkflowResult<bool> {
        let mut changed = std::pin::pin!(ctx.wait_condition(move |s| s.changes != seen));
        let mut timer = std::pin::pin!(ctx.timer(limit.max(Duration::from_millis(1))));
        select! {
            waited = changed => { waited?; Ok(true) },
            fired = timer => {
                if fired == TimerResult::Cancelled {
                    return Err(WorkflowTermination::cancelled());
                }
                Ok(false)
            }
        }
    }

    /// Reminds every confirmed passenger not yet reminded for this departure:
    /// the first time as one batch, later bookings one by one.
    async fn remind(
        ctx: &mut WorkflowContext<Self>,
        request: &TripReminderRequest,
        state: &TripReminderState,
        departure_ms: i64,
    ) -> WorkflowResult<()> {
        let first = state.reminded_for != Some(departure_ms);
        let already = if first {
            BTreeSet::new()
        } else {
            state.reminded.clone()
        };
        let pending: Vec<ContactId> = state.passengers().difference(&already).copied().collect();
        let event_id = trip_reminder_event_id(request.trip_id, departure_ms);
        let variables = serde_json::json!({
            "trip": state.trip.as_ref().map(|t| t.variables.clone()).unwrap_or_default()
        });
        let entity_refs = vec![format!("trip:{}", request.trip_id)];
        if first && !pending.is_empty() {
            let batch = BatchRequest {
                tenant_id: request.tenant_id,
                trigger_event: Trigger::TripReminder,
                source_event_id: event_id.clone(),
                variables,
                recipients: Recipients::Contacts(pending.clone()),
                entity_refs: entity_refs.clone(),
                concurrency: 20,
                step_deadline_secs: request.step_deadline_secs,
                progress: BatchProgress::default(),
            };
            let options = child_options(
                fanout_workflow_id(request.tenant_id, &event_id),
                labels::pending(request.tenant_id, Trigger::TripReminder, &entity_refs),
                format!(
                    "trip reminder for trip {} to {} passenger(s)",
                    request.trip_id,
                    pending.len()
                ),
            );
            started_or_existing(
                ctx.start_child_workflow(BatchNotificationWorkflow::run, batch, options)
                    .await
                    .map(|_| ()),
            )?;
        } else if !first {
            for contact in &pending {
                let notification = NotificationRequest {
                    tenant_id: request.tenant_id,
                    contact_id: *contact,
                    trigger_event: Trigger::TripReminder,
                    source_event_id: event_id.clone(),
                    channels: None,
                    variables: variables.clone(),
                    step_deadline_secs: request.step_deadline_secs,
                    replaces_message_id: None,
                    reply: None,
                };
                let options = child_options(
                    notification_workflow_id(request.tenant_id, &event_id, *contact),
                    labels::notification(
                        request.tenant_id,
                        Trigger::TripReminder,
                        *contact,
                        &entity_refs,
                    ),
                    format!(
                        "trip reminder for trip {} → contact {contact}",
                        request.trip_id
                    ),
                );
                started_or_existing(
                    ctx.start_child_workflow(NotificationWorkflow::run, notification, options)
                        .await
                        .map(|_| ()),
                )?;
            }
        }
        ctx.state_mut(|s| {
            if first {
                s.state.reminded.clear();
            }
            s.state.reminded_for = Some(departure_ms);
            s.state.reminded.extend(pending);
        });
        Ok(())
    }

    fn show(ctx: &WorkflowContext<Self>, state: &TripReminderState) {
        let v = view(state);
        let line = match (v.fires_at_ms, v.reminded_for) {
            (_, Some(_)) if v.reminded_for == v.departure_at_ms => format!(
                "reminded {} of {} passenger(s); waiting for departure",
                v.reminded, v.passengers
            ),
            (Some(at), _) => format!(
                "{} passenger(s); reminder fires at {} (Unix ms)",
                v.passengers, at
            ),
            (None, _) => format!(
                "{} passenger(s); waiting for the trip's departure time",
                v.passengers
            ),
        };
        ctx.set_current_details(line.clone());
        let _ = ctx.upsert_memo([(memo::PROGRESS, Some(MemoValue::new(line)))]);
    }
}

fn view(state: &TripReminderState) -> ReminderView {
    let departure_at_ms = state.trip.as_ref().and_then(|t| t.departure_at_ms);
    let lead = state.lead_ms.unwrap_or(DEFAULT_REMINDER_LEAD_MS);
    ReminderView {
        departure_at_ms,
        fires_at_ms: departure_at_ms.map(|d| d - lead),
        status: state.trip.as_ref().map(|t| t.status.clone()),
        passengers: state.passengers().len(),
        reminded_for: state.reminded_for,
        reminded: state.reminded.len(),
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn child_options(
    workflow_id: String,
    labels: SearchAttributes,
    summary: String,
) -> ChildWorkflowOptions {
    ChildWorkflowOptions::builder()
        .workflow_id(workflow_id)
        // Reminders already on their way finish even if this trip's workflow ends.
        .parent_close_policy(ParentClosePolicy::Abandon)
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .search_attributes(labels)
        .static_summary(summary)
        .build()
}

/// A child that exists already was started by an earlier run: that is the
/// idempotency working, not an error.
fn started_or_existing(result: Result<(), ChildWorkflowStartError>) -> WorkflowResult<()> {
    match result {
        Ok(()) => Ok(()),
        Err(ChildWorkflowStartError::StartFailed {
            cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists,
            ..
        }) => Ok(()),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trip(version_ms: i64, departure: i64, status: &str) -> TripSchedule {
        TripSchedule {
            departure_at_ms: Some(departure),
            status: status.to_owned(),
            version_ms,
            variables: serde_json::json!({}),
        }
    }

    fn booking(id: u128, contact: u128, confirmed: bool, version_ms: i64) -> BookingChange {
        BookingChange {
            booking_id: Uuid::from_u128(id),
            contact_id: ContactId(Uuid::from_u128(contact)),
            confirmed,
            version_ms,
        }
    }

    #[test]
    fn an_older_trip_event_does_not_undo_a_newer_one() {
        let mut state = TripReminderState::default();
        assert!(state.apply_trip(trip(2, 5_000, "SCHEDULED")));
        assert!(!state.apply_trip(trip(1, 9_000, "SCHEDULED")));
        assert!(
            !state.apply_trip(trip(2, 5_000, "SCHEDULED")),
            "a replay is no change"
        );
        assert_eq!(state.trip.and_then(|t| t.departure_at_ms), Some(5_000));
    }

    #[test]
    fn a_cancelled_booking_stays_cancelled_when_its_confirmation_arrives_late() {
        let mut state = TripReminderState::default();
        assert!(state.apply_booking(booking(1, 10, false, 2)));
        assert!(!state.apply_booking(booking(1, 10, true, 1)));
        assert!(state.passengers().is_empty());
    }

    #[test]
    fn two_seats_of_one_passenger_are_one_reminder() {
        let mut state = TripReminderState::default();
        state.apply_booking(booking(1, 10, true, 1));
        state.apply_booking(booking(2, 10, true, 1));
        state.apply_booking(booking(3, 11, true, 1));
        assert_eq!(state.passengers().len(), 2);
    }

    /// Collects the commands the workflow issues; the test holds the other
    /// reference, so the count says whether the workflow let go of it.
    #[derive(Default)]
    struct RecordingHost {
        commands: std::cell::RefCell<
            Vec<temporalio_common::protos::coresdk::workflow_commands::WorkflowCommand>,
        >,
    }

    impl temporalio_workflow::__private::sdk::WorkflowHost for RecordingHost {
        fn set_current_details(&self, _details: String) {}

        fn push_command(
            &self,
            command: temporalio_common::protos::coresdk::workflow_commands::WorkflowCommand,
        ) {
            self.commands.borrow_mut().push(command);
        }
    }

    /// The worker's cache evicts a parked reminder by dropping its instance
    /// with the timer pending; nothing of it may stay behind (it did in
    /// temporalio-workflow 1.1.1: vendor/README.md).
    #[test]
    fn a_reminder_evicted_while_parked_on_its_timer_is_freed() {
        use temporalio_common::protos::coresdk::workflow_activation::InitializeWorkflow;
        use temporalio_common::protos::coresdk::workflow_commands::workflow_command::Variant;
        use temporalio_workflow::__private::sdk::{
            GuestWorkflowInstance, MAIN_ROUTINE_ID, MainRoutineCompletion, RoutineCompletion,
            WorkflowInit, WorkflowInstance,
        };
        use temporalio_workflow::BaseWorkflowContext;

        let host = std::rc::Rc::new(RecordingHost::default());
        let init = WorkflowInit {
            namespace: "default".to_owned(),
            task_queue: "reminders".to_owned(),
            run_id: "run".to_owned(),
            initialize_workflow: InitializeWorkflow {
                workflow_type: "TripReminderWorkflow".to_owned(),
                ..Default::default()
            },
        };
        let context = BaseWorkflowContext::from_raw(
            init,
            temporalio_common::data_converters::DataConverter::default(),
            host.clone(),
            None,
            Vec::new(),
        );
        let request = TripReminderRequest {
            tenant_id: TenantId(Uuid::from_u128(1)),
            trip_id: Uuid::from_u128(2),
            step_deadline_secs: 60,
            carried: Some(TripReminderState::default()),
        };
        let mut instance = GuestWorkflowInstance::<TripReminderWorkflow>::new_with_workflow(
            TripReminderWorkflow::default(),
            context,
            Some(request),
        );
        let polled = instance
            .poll_routine(MAIN_ROUTINE_ID, std::task::Waker::noop())
            .expect("the reminder runs");
        assert!(
            matches!(
                polled.completion,
                Some(RoutineCompletion::Main(MainRoutineCompletion::Blocked))
            ),
            "the reminder waits: {polled:?}"
        );
        assert!(
            host.commands
                .borrow()
                .iter()
                .any(|c| matches!(c.variant, Some(Variant::StartTimer(_)))),
            "the reminder is parked on a timer"
        );

        drop(instance);
        assert_eq!(
            std::rc::Rc::strong_count(&host),
            1,
            "the evicted reminder's context is still alive"
        );
    }
}
