//! `GET /metrics`: what ops scrape. The Temporal SDK's own metrics of the
//! worker sit next to ours, in one exposition.

use crate::ops::{alert_rules, dashboard_exprs, metric_names};
use crate::support::TestApp;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

#[tokio::test]
async fn ops_scrape_the_sdks_task_latencies_slots_and_cache_next_to_our_dispatch_counters() {
    let app = TestApp::spawn().await;
    app.add_email_account(true).await;
    let profile = Uuid::new_v4();
    let contact = app
        .upsert_passenger(profile, "Ana López", &app.recipient("ana"), "es-MX")
        .await;
    let workflow_id = app.confirm_booking(profile, contact, "BF-METRICS").await;
    app.workflow_result(&workflow_id).await.expect("sent");

    let scraped = app.metrics().await;
    let mut families: BTreeMap<&str, usize> = BTreeMap::new();
    for line in scraped.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            *families.entry(name).or_default() += 1;
        }
    }
    let repeated: Vec<_> = families.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "one family per name: {repeated:?}");
    for family in [
        // Ours.
        "busflow_dispatch_total",
        "busflow_dispatch_seconds",
        "busflow_stuck_messages",
        "busflow_messages_24h",
        // The SDK's: task latencies, slots, the sticky cache, poll results.
        "temporal_workflow_task_schedule_to_start_latency_seconds",
        "temporal_workflow_task_execution_latency_seconds",
        "temporal_worker_task_slots_available",
        "temporal_sticky_cache_size",
        "temporal_workflow_task_queue_poll_succeed_total",
        "temporal_num_pollers",
    ] {
        assert!(
            families.contains_key(family),
            "{family} is scraped: {:?}",
            families.keys()
        );
    }
    assert!(scraped.contains("busflow_sdk_metrics_up 1"));
    let task_queue = format!("task_queue=\"{}\"", app.task_queue);
    assert!(
        scraped
            .lines()
            .any(|l| l.starts_with("temporal_sticky_cache_size{") && l.contains(&task_queue)),
        "the SDK reports this worker's task queue"
    );
    assert!(
        scraped
            .lines()
            .any(|l| l.starts_with("busflow_dispatch_total{")
                && l.contains("trigger=\"booking_confirmed\"")
                && l.contains("outcome=\"sent\"")),
        "the send is counted"
    );

    // What ships under ops/ reads what a live service exports. A few
    // families appear only once what they count has happened.
    const ONCE_IT_HAPPENS: [&str; 9] = [
        "busflow_contact_identifier_problems",
        "temporal_activity_schedule_to_start_latency_seconds",
        "temporal_activity_execution_latency_seconds",
        "temporal_sticky_cache_hit_total",
        "temporal_sticky_cache_miss_total",
        "temporal_workflow_failed_total",
        "temporal_workflow_task_execution_failed_total",
        "temporal_workflow_task_queue_poll_empty_total",
        "temporal_worker_task_slots_used",
    ];
    let used: BTreeSet<String> = alert_rules()
        .into_iter()
        .map(|rule| rule.expr)
        .chain(dashboard_exprs().into_iter().map(|(_, expr)| expr))
        .flat_map(|expr| metric_names(&expr))
        .collect();
    let unknown: Vec<&String> = used
        .iter()
        .filter(|name| !families.contains_key(name.as_str()))
        .filter(|name| !ONCE_IT_HAPPENS.contains(&name.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "ops/ reads metrics this service does not export: {unknown:?}"
    );
}
