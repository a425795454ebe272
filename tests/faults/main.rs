//! The fault suite: exactly one message per notification, whatever fails.
//!
//! The worker runs as its own OS process (`busflow-comms worker`) against a
//! Temporal dev server with its state on disk, Postgres behind a proxy that
//! can cut every connection, moto, and a Graph API fake that can refuse,
//! answer late or cut its answer short. Bookings are confirmed by playing
//! Hasura from the shipped metadata. Each case counts what the providers
//! accepted per person (the Graph fake's acceptances, moto's recorded email
//! and SMS), never our own rows, and the suite prints the matrix:
//! notifications, lost (reached nobody), duplicated (a second message on a
//! channel), and sent on the next channel because an outcome stayed unknown;
//! the note counts the crashes and the notifications that ended unconfirmed
//! (their last channel's outcome unknown too).

#[allow(dead_code, unused_imports)]
#[path = "../e2e/support/mod.rs"]
mod support;

mod graph;
mod processes;
mod proxy;
mod receipts;
mod ses_front;

use busflow_activities::model::Channel;
use busflow_workflows::{BatchNotificationWorkflow, NotificationWorkflow};
use graph::{GraphFake, Misbehaviour};
use processes::{DevServer, WorkerProcess};
use proxy::CuttableProxy;
use receipts::{ReceiptMode, ReceiptPlayer};
use serde_json::{Value, json};
use ses_front::SesFront;
use std::collections::BTreeMap;
use std::time::Duration;
use support::app::{TEST_KEY_SPEC, TestApp, TestOptions};
use support::meta::meta_secrets;
use support::story::Story;
use temporalio_client::WorkflowGetResultOptions;

/// One row of the matrix.
#[derive(Debug, Clone)]
struct Row {
    case: &'static str,
    notifications: usize,
    lost: usize,
    duplicated: usize,
    next_channel: usize,
    /// Notifications that did not end as delivered (or unconfirmed).
    unfinished: Vec<String>,
    note: String,
    /// The worker's last lines, shown when the case fails.
    worker_log: String,
}

/// Which chain a case's notifications take: a first channel, then SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// WhatsApp (receipts played from the Graph fake), then SMS.
    WhatsApp,
    /// Email (SES receipts played from moto), then SMS.
    Email,
    /// No booking confirmation at all; a trip's delay goes out as a fan-out
    /// on WhatsApp (receipts played), then SMS.
    FanoutWhatsApp,
}

/// Returns once no notification of the story's task queue is running (its
/// trips' reminders sleep on).
async fn nothing_running(story: &Story) {
    use busflow_workflows::names::workflow_types;
    let client = story.app.temporal().await;
    let running = format!(
        "TaskQueue = '{}' AND ExecutionStatus = 'Running' AND WorkflowType IN ('{}', '{}', '{}')",
        story.app.task_queue,
        workflow_types::NOTIFICATION,
        workflow_types::BATCH_NOTIFICATION,
        workflow_types::FANOUT_CHUNK,
    );
    loop {
        let count = client
            .count_workflows(&running, temporalio_client::WorkflowCountOptions::default())
            .await
            .map(|c| c.count());
        if matches!(count, Ok(0)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl Chain {
    fn first_channel(self) -> Channel {
        match self {
            Chain::WhatsApp | Chain::FanoutWhatsApp => Channel::WhatsApp,
            Chain::Email => Channel::Email,
        }
    }
}

/// One case's world: a tenant, its worker process, the fakes.
struct Run {
    chain: Chain,
    story: Story,
    graph: GraphFake,
    proxy: CuttableProxy,
    /// moto as the worker sees it: SES that keeps each send's tags.
    _ses: SesFront,
    worker: WorkerProcess,
    /// Plays receipts for as long as the run lives.
    _receipts: ReceiptPlayer,
    people: Vec<Value>,
}

impl Run {
    async fn start(
        dev: &DevServer,
        chain: Chain,
        misbehaviour: Misbehaviour,
        receipts: ReceiptMode,
        crash_at: Option<(&str, u64)>,
    ) -> Self {
        let app = TestApp::spawn_with(TestOptions {
            temporal_address: Some(dev.address.clone()),
            start_worker: false,
            ..TestOptions::default()
        })
        .await;
        let graph = GraphFake::start(misbehaviour).await;
        let secrets = meta_secrets();
        match chain {
            Chain::WhatsApp => {
                app.add_whatsapp_account(&secrets).await;
                app.add_whatsapp_template().await;
                app.override_booking_confirmed(&["WHATSAPP", "SMS"], json!({"WHATSAPP": 8}))
                    .await;
            }
            Chain::Email => {
                app.add_email_account(true).await;
                app.override_booking_confirmed(&["EMAIL", "SMS"], json!({"EMAIL": 8}))
                    .await;
            }
            Chain::FanoutWhatsApp => {
                app.add_whatsapp_account(&secrets).await;
                sqlx::query(
                    "insert into notification_templates
                        (tenant_id, trigger_event, channel, locale, body,
                         whatsapp_template_name, whatsapp_language, whatsapp_parameters)
                     values ($1, 'trip_delayed', 'WHATSAPP', 'es', 'Hola {{ contact.first_name }}',
                             $2, $3, $4)",
                )
                .bind(app.tenant_id)
                .bind(support::meta::WHATSAPP_TEMPLATE)
                .bind(support::meta::WHATSAPP_LANGUAGE)
                .bind(json!({"body": ["contact.first_name"]}))
                .execute(&app.pool)
                .await
                .expect("trip_delayed WhatsApp template");
                sqlx::query(
                    "update tenant_settings set trigger_overrides = $2 where tenant_id = $1",
                )
                .bind(app.tenant_id)
                .bind(json!({
                    "booking_confirmed": {"chain": []},
                    "trip_delayed": {"chain": ["WHATSAPP", "SMS"], "timeouts": {"WHATSAPP": 8}}
                }))
                .execute(&app.pool)
                .await
                .expect("overrides");
            }
        }
        app.add_sms_account().await;
        let database = app
            .database_url()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let proxy = CuttableProxy::start("127.0.0.1:5432".to_owned()).await;
        let ses = SesFront::start(&app.aws_endpoint).await;
        let env = vec![
            (
                "DATABASE_URL".into(),
                format!("postgres://postgres@{}/{database}", proxy.address),
            ),
            ("TEMPORAL_ADDRESS".into(), dev.address.clone()),
            ("TEMPORAL_NAMESPACE".into(), "default".into()),
            ("BUSFLOW_TASK_QUEUE".into(), app.task_queue.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("BUSFLOW_AWS_ENDPOINT_URL".into(), ses.url.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("BUSFLOW_META_GRAPH_URL".into(), graph.url.clone()),
            ("BUSFLOW_META_SEND_TIMEOUT_MS".into(), "800".into()),
            ("BUSFLOW_SECRET_KEYS".into(), TEST_KEY_SPEC.into()),
            ("BUSFLOW_ACTIVE_KEY_ID".into(), "test-2".into()),
            ("BUSFLOW_ACTIVITY_SLOTS".into(), "8".into()),
            ("BUSFLOW_WATCHDOG_INTERVAL_SECS".into(), "3600".into()),
            ("RUST_LOG".into(), "warn,busflow=info".into()),
            // A crash point counts the first channel's passages only: a case
            // is killed where its name says, never in the SMS fallback.
            (
                "BUSFLOW_FAULT_ABORT_CHANNEL".into(),
                chain.first_channel().as_str().into(),
            ),
        ];
        let worker = WorkerProcess::start(env, crash_at);
        let receipts = ReceiptPlayer::start(&app, &secrets, &graph, &ses, receipts);
        Self {
            chain,
            story: Story::of(app),
            graph,
            proxy,
            _ses: ses,
            worker,
            _receipts: receipts,
            people: Vec::new(),
        }
    }

    /// `n` passengers book the same trip; each booking is confirmed through
    /// Hasura (every trigger the write fires, each with its own event id).
    async fn confirm_bookings(&mut self, n: usize) {
        confirm_bookings(&mut self.story, &mut self.people, n).await;
    }

    /// Waits for every notification; returns the ones that did not end, and
    /// how many ended unconfirmed (their last channel's outcome unknown: the
    /// counts at the providers judge those).
    async fn settle(&self, within: Duration) -> (Vec<String>, usize) {
        let client = self.story.app.temporal().await;
        let mut unfinished = Vec::new();
        let mut unconfirmed = 0;
        for id in self.story.started() {
            if id.starts_with("fanout/") {
                let handle = client.get_workflow_handle::<BatchNotificationWorkflow>(id);
                match tokio::time::timeout(
                    within,
                    handle.get_result(WorkflowGetResultOptions::default()),
                )
                .await
                {
                    Ok(Ok(progress)) => {
                        unconfirmed += progress.unconfirmed as usize;
                        if progress.delivered + progress.unconfirmed != progress.dispatched {
                            unfinished.push(format!("{id}: {progress:?}"));
                        }
                    }
                    Ok(Err(e)) => unfinished.push(format!("{id}: {e:#}")),
                    Err(_) => unfinished.push(format!("{id}: not finished within {within:?}")),
                }
                continue;
            }
            if !id.starts_with("notify/") {
                continue;
            }
            let handle = client.get_workflow_handle::<NotificationWorkflow>(id);
            match tokio::time::timeout(
                within,
                handle.get_result(WorkflowGetResultOptions::default()),
            )
            .await
            {
                Ok(Ok(outcome)) if outcome.delivered.is_some() => {}
                // A fan-out case confirms its bookings without a word.
                Ok(Ok(outcome))
                    if self.chain == Chain::FanoutWhatsApp && outcome.not_sent_reason.is_some() => {
                }
                Ok(Ok(outcome)) => unfinished.push(format!("{id}: {outcome:?}")),
                Ok(Err(e)) if format!("{e:#}").contains(UNCONFIRMED) => unconfirmed += 1,
                Ok(Err(e)) => unfinished.push(format!("{id}: {e:#}")),
                Err(_) => unfinished.push(format!("{id}: not finished within {within:?}")),
            }
        }
        (unfinished, unconfirmed)
    }

    /// What reached each person, per channel, at the providers.
    async fn counts(&self) -> Vec<BTreeMap<&'static str, usize>> {
        let record = self.story.app.provider_record().await;
        let whatsapp = self.graph.accepted_per_recipient();
        let count = |list: &Value, field: &dyn Fn(&Value) -> Option<String>, address: &str| {
            list.as_array()
                .map(|all| {
                    all.iter()
                        .filter(|m| field(m).as_deref() == Some(address))
                        .count()
                })
                .unwrap_or(0)
        };
        self.people
            .iter()
            .map(|person| {
                let phone = e164(person);
                let email = person["email"].as_str().unwrap_or_default();
                BTreeMap::from([
                    (
                        "WHATSAPP",
                        whatsapp
                            .get(phone.trim_start_matches('+'))
                            .copied()
                            .unwrap_or(0),
                    ),
                    (
                        "EMAIL",
                        count(
                            &record["ses"]["Message"],
                            &|m| {
                                m["destinations"]["ToAddresses"][0]
                                    .as_str()
                                    .map(str::to_owned)
                            },
                            email,
                        ),
                    ),
                    (
                        "SMS",
                        count(
                            &record["sns"]["SMS"],
                            &|m| m["phone_number"].as_str().map(str::to_owned),
                            &phone,
                        ),
                    ),
                ])
            })
            .collect()
    }

    /// Restarts the worker each time it crashed at `point`, armed again for
    /// the next of `after` (the first arming is `Run::start`'s); the last
    /// worker runs unarmed. Returns the crashes seen.
    ///
    /// The cases arm once: the worker after the crash is unarmed. The SMS
    /// fallbacks of the crash's unknown outcomes go out at the restarted
    /// worker's start, with its held sends; a second armed crash there can
    /// kill a fallback before its request leaves, which cannot be told from
    /// one that reached the person, and a person reached by neither would be
    /// lost for real (seen with `[2, 1]`).
    async fn restart_after_each_crash(&mut self, point: &str, after: &[u64]) -> usize {
        let mut crashes = 0;
        let rearm = after[1..].iter().map(|n| Some((point, *n))).chain([None]);
        let Run { story, worker, .. } = self;
        for again in rearm {
            // Once every notification has ended, no crash is coming.
            let crashed = tokio::select! {
                crashed = worker.restart_once_crashed(Duration::from_secs(60), again) => crashed,
                () = nothing_running(story) => false,
            };
            if crashed {
                crashes += 1;
            }
        }
        crashes
    }

    async fn row(&self, case: &'static str, within: Duration, note: String) -> Row {
        let (unfinished, unconfirmed) = self.settle(within).await;
        let note = match unconfirmed {
            0 => note,
            n if note.is_empty() => format!("{n} unconfirmed"),
            n => format!("{note}, {n} unconfirmed"),
        };
        let counts = self.counts().await;
        Row {
            case,
            notifications: self.people.len(),
            lost: counts
                .iter()
                .filter(|c| c.values().sum::<usize>() == 0)
                .count(),
            duplicated: counts
                .iter()
                .flat_map(|c| c.values())
                .map(|n| n.saturating_sub(1))
                .sum(),
            next_channel: counts
                .iter()
                .filter(|c| c.values().filter(|n| **n > 0).count() > 1)
                .count(),
            unfinished,
            note,
            worker_log: self.worker.log_tail(),
        }
    }
}

/// How a `NotificationUnconfirmed` failure reads (`NotificationWorkflow`).
const UNCONFIRMED: &str = "notification not confirmed (it may have reached the person)";

async fn confirm_bookings(story: &mut Story, people: &mut Vec<Value>, n: usize) -> Value {
    let trip = story.trip(None).await;
    for i in 0..n {
        let person = story.passenger(&format!("Pasajero {i}"), "es-MX").await;
        story.book(&person, &trip, &format!("BF-F{i:03}")).await;
        people.push(person);
    }
    trip
}

/// The trip is delayed 45 minutes, as its context writes it: one fan-out.
async fn delay(story: &mut Story, trip: &mut Value) {
    let write = story
        .update("trips", trip, |t| {
            t["status"] = json!("DELAYED");
            t["delay_minutes"] = json!(45);
        })
        .await;
    assert!(
        write.triggers().contains(&"trip_delayed"),
        "{:?}",
        write.triggers()
    );
}

/// `n` passengers of one trip hear of its delay by fan-out while the worker
/// aborts right after Meta accepted a message (the `after` counts, as in
/// [`crash_after_acceptance`]), mid-round, with sends in flight.
async fn fanout_crash_after_acceptance(dev: &DevServer, n: usize, after: &[u64]) -> Row {
    const POINT: &str = "provider_accepted";
    let mut run = Run::start(
        dev,
        Chain::FanoutWhatsApp,
        Misbehaviour::Slow(Duration::from_millis(50)),
        ReceiptMode::InOrder,
        Some((POINT, after[0])),
    )
    .await;
    let mut trip = confirm_bookings(&mut run.story, &mut run.people, n).await;
    delay(&mut run.story, &mut trip).await;
    let crashes = run.restart_after_each_crash(POINT, after).await;
    run.row(
        "fan-out: SIGKILL after Meta accepted, mid-round",
        Duration::from_secs(120),
        format!("{crashes} crashes"),
    )
    .await
}

fn e164(person: &Value) -> String {
    busflow_activities::identifiers::PhoneNumber::parse(
        person["phone"].as_str().unwrap_or_default(),
        "MX",
    )
    .map(|p| p.to_string())
    .unwrap_or_default()
}

/// The worker aborts right after the provider accepted a message, before
/// it records it: first after `after[0]` acceptances, then (restarted and
/// armed again) after each next count; the last worker runs unarmed.
async fn crash_after_acceptance(
    dev: &DevServer,
    case: &'static str,
    chain: Chain,
    notifications: usize,
    after: &[u64],
) -> Row {
    const POINT: &str = "provider_accepted";
    let mut run = Run::start(
        dev,
        chain,
        Misbehaviour::None,
        ReceiptMode::InOrder,
        Some((POINT, after[0])),
    )
    .await;
    run.confirm_bookings(notifications).await;
    let crashes = run.restart_after_each_crash(POINT, after).await;
    run.row(case, Duration::from_secs(90), format!("{crashes} crashes"))
        .await
}

async fn random_kills_under_load(dev: &DevServer) -> Row {
    let mut run = Run::start(
        dev,
        Chain::WhatsApp,
        Misbehaviour::Slow(Duration::from_millis(150)),
        ReceiptMode::InOrder,
        None,
    )
    .await;
    {
        let Run {
            story,
            people,
            worker,
            ..
        } = &mut run;
        let confirm = confirm_bookings(story, people, 40);
        tokio::pin!(confirm);
        // Kill the worker every 1.5 s while the bookings are confirmed and sent.
        let mut ticker = tokio::time::interval(Duration::from_millis(1500));
        ticker.tick().await;
        let mut confirmed = false;
        while !confirmed || worker.kills < 4 {
            tokio::select! {
                _ = &mut confirm, if !confirmed => confirmed = true,
                _ = ticker.tick() => if worker.kills < 4 { worker.kill_and_restart() },
            }
        }
    }
    let kills = run.worker.kills;
    run.row(
        "SIGKILL at random moments under load",
        Duration::from_secs(120),
        format!("{kills} kills"),
    )
    .await
}

async fn postgres_cut_mid_dispatch(dev: &DevServer) -> Row {
    let mut run = Run::start(
        dev,
        Chain::WhatsApp,
        Misbehaviour::Slow(Duration::from_millis(300)),
        ReceiptMode::InOrder,
        None,
    )
    .await;
    run.confirm_bookings(30).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    run.proxy.cut();
    tokio::time::sleep(Duration::from_secs(8)).await;
    run.proxy.restore();
    run.row(
        "Postgres connections cut for 8 s mid-dispatch",
        Duration::from_secs(120),
        String::new(),
    )
    .await
}

async fn dev_server_restart_mid_flight(dev: &mut DevServer) -> Row {
    let mut run = Run::start(
        dev,
        Chain::WhatsApp,
        Misbehaviour::Slow(Duration::from_millis(300)),
        ReceiptMode::InOrder,
        None,
    )
    .await;
    run.confirm_bookings(30).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    dev.restart_after(Duration::from_secs(3)).await;
    run.row(
        "Temporal dev server SIGKILLed mid-flight, back in 3 s",
        Duration::from_secs(120),
        String::new(),
    )
    .await
}

async fn provider_misbehaves(
    dev: &DevServer,
    case: &'static str,
    misbehaviour: Misbehaviour,
) -> Row {
    let mut run = Run::start(
        dev,
        Chain::WhatsApp,
        misbehaviour,
        ReceiptMode::InOrder,
        None,
    )
    .await;
    run.confirm_bookings(12).await;
    let refused = run.graph.refused();
    let mut row = run.row(case, Duration::from_secs(90), String::new()).await;
    if refused > 0 {
        row.note = format!("{refused} refused");
    }
    row
}

async fn receipts_duplicated_and_reordered(dev: &DevServer) -> Row {
    let mut run = Run::start(
        dev,
        Chain::WhatsApp,
        Misbehaviour::None,
        ReceiptMode::DuplicatedAndReordered,
        None,
    )
    .await;
    run.confirm_bookings(15).await;
    run.row(
        "Meta receipts duplicated and reordered",
        Duration::from_secs(90),
        String::new(),
    )
    .await
}

#[tokio::test]
async fn every_fault_leaves_each_person_with_exactly_one_message_per_channel() {
    let mut dev = DevServer::start().await;
    support::services::shared_with_temporal(Some(dev.address.clone()));
    let rows = vec![
        crash_after_acceptance(
            &dev,
            "SIGKILL after Meta accepted, before the record",
            Chain::WhatsApp,
            12,
            &[3],
        )
        .await,
        crash_after_acceptance(
            &dev,
            "SIGKILL after SES accepted, before the record",
            Chain::Email,
            10,
            &[2],
        )
        .await,
        random_kills_under_load(&dev).await,
        postgres_cut_mid_dispatch(&dev).await,
        dev_server_restart_mid_flight(&mut dev).await,
        provider_misbehaves(&dev, "Meta answers 5xx first", Misbehaviour::Refuse5xx).await,
        provider_misbehaves(
            &dev,
            "Meta answers after the timeout",
            Misbehaviour::AnswerLate(Duration::from_secs(2)),
        )
        .await,
        provider_misbehaves(
            &dev,
            "Meta's 2xx cut short mid-body",
            Misbehaviour::CutShort,
        )
        .await,
        receipts_duplicated_and_reordered(&dev).await,
        fanout_crash_after_acceptance(&dev, 60, &[10]).await,
    ];
    let matrix = matrix(&rows);
    eprintln!("{matrix}");
    // scripts/test.sh shows it after the run, pass or fail.
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-matrix.md"),
        &matrix,
    );
    for row in &rows {
        let context = format!(
            "{}: unfinished: {:#?}\nworker log:\n{}",
            row.case, row.unfinished, row.worker_log
        );
        assert_eq!(row.lost, 0, "nothing lost; {context}");
        assert_eq!(row.duplicated, 0, "never twice on a channel; {context}");
        assert!(
            row.unfinished.is_empty(),
            "every notification ended; {context}"
        );
    }
}

fn matrix(rows: &[Row]) -> String {
    let mut out = String::from(
        "\n| case | notifications | lost | duplicated on a channel | also sent on the next channel (unknown outcome) | note |\n|---|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.case, row.notifications, row.lost, row.duplicated, row.next_channel, row.note
        ));
    }
    out
}
