//! What ships under `ops/` loads and reads only metrics we export: the
//! Prometheus alert rules (`ops/prometheus/alerts.yml`), the Grafana
//! dashboard (`ops/grafana/busflow-comms.json`) and their runbooks
//! (`ops/README.md`). promtool (Prometheus's own, from `scripts/tools.sh`)
//! checks the rules, runs their unit tests (`ops/prometheus/alerts_test.yml`) and parses
//! every dashboard query. No Prometheus, Grafana, Postgres or Temporal is
//! needed.

#[path = "shared/ops.rs"]
mod ops;

use ops::{AlertRule, alert_rules, dashboard, dashboard_exprs, metric_names};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Every metric family the service exports (`GET /metrics` of the API and of
/// a worker). `tests/e2e/metrics.rs` checks them against a live scrape; a
/// family added there and used here belongs in this list.
const EXPORTED: [&str; 28] = [
    // Ours, per process (activities/src/metrics.rs).
    "busflow_dispatch_total",
    "busflow_dispatch_seconds",
    "busflow_rate_limit_waits_total",
    "busflow_rate_limit_wait_seconds_total",
    "busflow_sdk_metrics_up",
    // Ours, cluster-wide, read from Postgres by the API (api/src/metrics.rs).
    "busflow_stuck_messages",
    "busflow_unconfirmed_messages",
    "busflow_messages_24h",
    "busflow_inbound_dead_letters",
    "busflow_inbound_quarantined_24h",
    "busflow_contact_identifier_problems",
    // The Temporal SDK's (durations in seconds, counters with `_total`).
    "temporal_workflow_task_schedule_to_start_latency_seconds",
    "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_workflow_task_execution_latency_seconds",
    "temporal_workflow_endtoend_latency_seconds",
    "temporal_local_activity_execution_latency_seconds",
    "temporal_activity_execution_latency_seconds",
    "temporal_worker_task_slots_available",
    "temporal_worker_task_slots_used",
    "temporal_sticky_cache_size",
    "temporal_sticky_cache_hit_total",
    "temporal_sticky_cache_miss_total",
    "temporal_num_pollers",
    "temporal_workflow_task_queue_poll_succeed_total",
    "temporal_workflow_task_queue_poll_empty_total",
    "temporal_workflow_completed_total",
    "temporal_workflow_failed_total",
    "temporal_workflow_task_execution_failed_total",
];

/// Read from Postgres at scrape time by every API replica, each reporting
/// the same value: aggregated with `max`, never added up.
const CLUSTER_GAUGES: [&str; 6] = [
    "busflow_stuck_messages",
    "busflow_unconfirmed_messages",
    "busflow_messages_24h",
    "busflow_inbound_dead_letters",
    "busflow_inbound_quarantined_24h",
    "busflow_contact_identifier_problems",
];

/// The Temporal SDK's histogram families.
const HISTOGRAMS: [&str; 7] = [
    "busflow_dispatch_seconds",
    "temporal_workflow_task_schedule_to_start_latency_seconds",
    "temporal_activity_schedule_to_start_latency_seconds",
    "temporal_workflow_task_execution_latency_seconds",
    "temporal_workflow_endtoend_latency_seconds",
    "temporal_local_activity_execution_latency_seconds",
    "temporal_activity_execution_latency_seconds",
];

/// Every expression that ships: (where, expr).
fn every_expr() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = alert_rules()
        .into_iter()
        .map(|r| (format!("alert {}", r.name), r.expr))
        .collect();
    all.extend(
        dashboard_exprs()
            .into_iter()
            .map(|(title, expr)| (format!("panel {title:?}"), expr)),
    );
    all
}

fn fail_if_any(problems: &[String], what: &str) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

// ------------------------------------------------------------ the parser

#[test]
fn metric_names_are_the_series_an_expression_reads() {
    let names = |expr: &str| -> Vec<String> { metric_names(expr).into_iter().collect() };
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (le, channel) (rate(busflow_dispatch_seconds_bucket{channel=~"$channel", le!="+Inf"}[$__rate_interval])))"#
        ),
        ["busflow_dispatch_seconds"]
    );
    assert_eq!(
        names(
            "sum without (instance) (rate(a_total[5m])) / on (channel) group_left (trigger) b > bool 0.5 and c offset 1h unless absent(d{x=\"y\"})"
        ),
        ["a_total", "b", "c", "d"]
    );
    assert_eq!(names("max(x) > 1e-9 or vector(0)"), ["x"]);
    assert_eq!(
        names(r#"label_replace(up_total, "dst", "$1 sum(rate(no_metric))", "src", "(.*)")"#),
        ["up_total"]
    );
    assert_eq!(
        names(r#"{__name__="busflow_stuck_messages"} > 0"#),
        ["busflow_stuck_messages"]
    );
    assert_eq!(
        names("# a comment naming not_a_metric\nfoo + 0x1F - 1.5e+3 * Inf / NaN"),
        ["foo"]
    );
    assert_eq!(
        names(r#"count_values("le", x_count) + topk(5, y) + quantile(0.9, z_sum)"#),
        ["x", "y", "z"]
    );
    assert_eq!(
        names("sum by (le) (x_bucket) / ignoring (le) group_right y_sum"),
        ["x", "y"]
    );
    assert_eq!(
        names("max_over_time(rate(x_total{a=\"}\"}[5m])[1h:1m]) @ start()"),
        ["x_total"]
    );
    assert_eq!(names("SUM BY (le) (rate(m[5m]))"), ["m"]);
    assert!(names("vector(1) + time()").is_empty());
}

#[test]
fn the_parser_tells_what_holds_a_metric_and_what_is_grouped_by() {
    assert_eq!(
        ops::enclosing_calls("max by (reason) (g offset 1h) - sum(rate(c_total[5m])) + (x) + y"),
        vec![
            ("g".to_owned(), Some("max".to_owned())),
            ("c_total".to_owned(), Some("rate".to_owned())),
            ("x".to_owned(), None),
            ("y".to_owned(), None),
        ]
    );
    assert_eq!(
        ops::grouping_labels("sum by (le, channel) (x) / sum without (instance) (y)"),
        vec![
            BTreeSet::from(["le".to_owned(), "channel".to_owned()]),
            BTreeSet::from(["instance".to_owned()]),
        ]
    );
    assert_eq!(
        ops::call_arguments(
            "a + histogram_quantile(0.5, sum by (le) (f(x))) - my_histogram_quantile",
            "histogram_quantile"
        ),
        ["0.5, sum by (le) (f(x))"]
    );
    assert!(ops::balanced(r#"sum(rate(x{a="(]"}[5m]))"#).is_ok());
    assert!(ops::balanced("sum(rate(x[5m])").is_err());
    assert!(ops::balanced("sum(rate(x[5m)))").is_err());
    assert!(ops::balanced(r#"x{a="b}"#).is_err());
    assert!(ops::is_duration("5m") && ops::is_duration("1h30m") && ops::is_duration("500ms"));
    assert!(!ops::is_duration("5") && !ops::is_duration("m") && !ops::is_duration("5 m"));
}

#[test]
fn readme_anchors_are_githubs() {
    let anchors = ops::heading_anchors(
        "# Ops\n## Foo Bar (baz)\n### StuckMessages\n```sh\n# not a heading\n```\n## Foo Bar (baz)\n#nospace\n",
    );
    assert_eq!(
        anchors,
        BTreeSet::from(["ops", "foo-bar-baz", "stuckmessages", "foo-bar-baz-1"].map(str::to_owned))
    );
}

#[test]
fn panels_nested_in_a_collapsed_row_are_walked() {
    let board = json!({"panels": [
        {"id": 1, "type": "row", "title": "Open", "panels": []},
        {"id": 2, "type": "stat", "title": "A", "targets": [{"expr": "a"}]},
        {"id": 3, "type": "row", "title": "Closed", "collapsed": true, "panels": [
            {"id": 4, "type": "timeseries", "title": "B", "targets": [{"expr": "b"}, {"expr": "c"}]}
        ]}
    ]});
    assert_eq!(ops::panels(&board).len(), 4);
    assert_eq!(
        ops::exprs_of(&board),
        [("A", "a"), ("B", "b"), ("B", "c")].map(|(t, e)| (t.to_owned(), e.to_owned()))
    );
}

// ------------------------------------------------------------ the alerts

#[test]
fn the_alert_rules_parse_into_groups_of_complete_rules() {
    let file = ops::alert_file();
    let groups = file
        .get("groups")
        .and_then(serde_norway::Value::as_sequence)
        .expect("groups");
    assert!(!groups.is_empty(), "alerts.yml has groups");
    for group in groups {
        let name = group.get("name").and_then(serde_norway::Value::as_str);
        assert!(name.is_some_and(|n| !n.is_empty()), "every group is named");
        let rules = group
            .get("rules")
            .and_then(serde_norway::Value::as_sequence);
        assert!(
            rules.is_some_and(|r| !r.is_empty()),
            "group {name:?} has rules"
        );
    }

    let rules = alert_rules();
    let mut problems = Vec::new();
    for rule in &rules {
        let AlertRule {
            name,
            expr,
            for_,
            severity,
            summary,
            description,
            runbook,
            ..
        } = rule;
        for (field, value) in [
            ("alert", name),
            ("expr", expr),
            ("for", for_),
            ("labels.severity", severity),
            ("annotations.summary", summary),
            ("annotations.description", description),
            ("annotations.runbook", runbook),
        ] {
            if value.is_empty() {
                problems.push(format!("{name:?} has no {field}"));
            }
        }
        if !for_.is_empty() && !ops::is_duration(for_) {
            problems.push(format!("{name}: `for: {for_}` is not a duration"));
        }
        if !["page", "ticket"].contains(&severity.as_str()) {
            problems.push(format!(
                "{name}: severity {severity:?} is neither page nor ticket"
            ));
        }
    }
    fail_if_any(&problems, "incomplete rules");

    let mut seen = BTreeSet::new();
    let repeated: Vec<_> = rules
        .iter()
        .filter(|r| !seen.insert(r.name.clone()))
        .map(|r| r.name.clone())
        .collect();
    assert!(repeated.is_empty(), "alert names are unique: {repeated:?}");
}

#[test]
fn every_runbook_is_a_section_of_the_ops_readme() {
    let anchors = ops::heading_anchors(&ops::read(&ops::readme_path()));
    let mut problems = Vec::new();
    for rule in alert_rules() {
        match rule.runbook.split_once('#') {
            Some(("ops/README.md", anchor)) if anchors.contains(anchor) => {}
            Some(("ops/README.md", anchor)) => problems.push(format!(
                "{}: ops/README.md has no heading with anchor #{anchor}",
                rule.name
            )),
            _ => problems.push(format!(
                "{}: runbook {:?} is not ops/README.md#<section>",
                rule.name, rule.runbook
            )),
        }
    }
    fail_if_any(&problems, "runbooks");
}

#[test]
fn the_alerts_cover_stuck_messages_failures_rate_limits_and_queue_latency() {
    let rules = alert_rules();
    let reading = |family: &str| -> Vec<&AlertRule> {
        rules
            .iter()
            .filter(|r| metric_names(&r.expr).contains(family))
            .collect()
    };
    let stuck = reading("busflow_stuck_messages");
    assert!(
        stuck
            .iter()
            .any(|r| r.severity == "page" && r.expr.contains('>')),
        "a message stuck for over 5 minutes pages: {stuck:?}"
    );
    assert!(
        reading("busflow_dispatch_total")
            .iter()
            .any(|r| r.expr.contains("rejected") && r.expr.contains('/')),
        "an alert on the share of dispatches rejected"
    );
    assert!(
        !reading("busflow_rate_limit_waits_total").is_empty()
            || !reading("busflow_rate_limit_wait_seconds_total").is_empty(),
        "an alert on rate-limit waits"
    );
    assert!(
        reading("temporal_workflow_task_schedule_to_start_latency_seconds")
            .iter()
            .any(|r| r.expr.contains("histogram_quantile")),
        "an alert on workflow task queue latency"
    );
    assert!(
        !reading("busflow_unconfirmed_messages").is_empty(),
        "an alert on sends whose outcome is unknown"
    );
}

#[test]
fn every_alert_has_a_promtool_unit_test_where_it_fires() {
    let tested = ops::alerts_tested_firing();
    let untested: Vec<_> = alert_rules()
        .into_iter()
        .map(|r| r.name)
        .filter(|name| !tested.contains(name))
        .collect();
    assert!(
        untested.is_empty(),
        "ops/prometheus/alerts_test.yml has no case where these fire: {untested:?}"
    );
}

// ------------------------------------------------------------ the dashboard

#[test]
fn the_dashboard_parses_with_unique_panels_that_each_query_prometheus() {
    let board = dashboard();
    assert_eq!(board["schemaVersion"], 39);
    let variables: BTreeMap<&str, &Json> = board
        .pointer("/templating/list")
        .and_then(Json::as_array)
        .expect("templating.list")
        .iter()
        .filter_map(|v| Some((v.get("name")?.as_str()?, v)))
        .collect();
    let datasource = variables.get("datasource").expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for name in ["namespace", "task_queue"] {
        let variable = variables
            .get(name)
            .unwrap_or_else(|| panic!("a {name} variable"));
        assert_eq!(variable["type"], "query", "{name}");
    }
    for (name, query) in ops::variable_queries(&board) {
        let selector = query
            .strip_prefix("label_values(")
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _label)| selector)
            .unwrap_or_else(|| panic!("{name}: {query:?} is label_values(<selector>, <label>)"));
        for family in metric_names(selector) {
            assert!(EXPORTED.contains(&family.as_str()), "{name} reads {family}");
        }
    }

    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    let mut boxes = Vec::new();
    for panel in ops::panels(&board) {
        let title = panel["title"].as_str().unwrap_or_default();
        let Some(id) = panel["id"].as_u64() else {
            problems.push(format!("{title:?} has no id"));
            continue;
        };
        if !ids.insert(id) {
            problems.push(format!("id {id} is used twice (again by {title:?})"));
        }
        let grid = &panel["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| grid[k].as_u64());
        let (Some(h), Some(w), Some(x), Some(y)) = (h, w, x, y) else {
            problems.push(format!("{title:?} has no complete gridPos"));
            continue;
        };
        if x + w > 24 || w == 0 || h == 0 {
            problems.push(format!("{title:?} does not fit the 24-column grid"));
        }
        boxes.push((title.to_owned(), x, y, w, h));
        let kind = panel["type"].as_str().unwrap_or_default();
        if kind == "row" {
            continue;
        }
        if title.is_empty() {
            problems.push(format!("panel {id} has no title"));
        }
        if !["timeseries", "stat"].contains(&kind) {
            problems.push(format!("{title:?} is a {kind:?} panel"));
        }
        let uses_variable = |ds: &Json| ds["uid"] == "${datasource}" || ds == "${datasource}";
        if !uses_variable(&panel["datasource"]) {
            problems.push(format!("{title:?} does not query ${{datasource}}"));
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{title:?} has no target"));
        }
        for target in targets {
            if target["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("{title:?} has a target without expr"));
            }
            if !target["datasource"].is_null() && !uses_variable(&target["datasource"]) {
                problems.push(format!(
                    "a target of {title:?} does not query ${{datasource}}"
                ));
            }
        }
    }
    for (i, (a, ax, ay, aw, ah)) in boxes.iter().enumerate() {
        for (b, bx, by, bw, bh) in &boxes[i + 1..] {
            let across = *ax < *bx + *bw && *bx < *ax + *aw;
            let down = *ay < *by + *bh && *by < *ay + *ah;
            if across && down {
                problems.push(format!("{a:?} and {b:?} overlap"));
            }
        }
    }
    fail_if_any(&problems, "dashboard panels");
}

#[test]
fn temporal_panels_follow_the_namespace_and_task_queue_variables() {
    let mut problems = Vec::new();
    for (title, expr) in dashboard_exprs() {
        let reads_temporal = metric_names(&expr)
            .iter()
            .any(|m| m.starts_with("temporal_"));
        if reads_temporal && !(expr.contains("$namespace") && expr.contains("$task_queue")) {
            problems.push(format!("{title:?}: {expr}"));
        }
    }
    fail_if_any(&problems, "panels reading every namespace and task queue");
}

// ------------------------------------------------------------ every expression

#[test]
fn every_expression_is_balanced_and_reads_only_exported_metrics() {
    let mut problems = Vec::new();
    for (at, expr) in every_expr() {
        if let Err(e) = ops::balanced(&expr) {
            problems.push(format!("{at}: {e}: {expr}"));
        }
        let names = metric_names(&expr);
        if names.is_empty() && !expr.contains("absent(") {
            problems.push(format!("{at} reads no metric: {expr}"));
        }
        for name in names {
            if !(name.starts_with("busflow_") || name.starts_with("temporal_")) {
                problems.push(format!(
                    "{at} reads {name}, which is not ours nor the SDK's"
                ));
            } else if !EXPORTED.contains(&name.as_str()) {
                problems.push(format!("{at} reads {name}, which nobody exports"));
            }
        }
    }
    fail_if_any(&problems, "expressions");
}

#[test]
fn every_series_is_read_the_way_its_type_needs() {
    let mut problems = Vec::new();
    for (at, expr) in every_expr() {
        for (series, call) in ops::enclosing_calls(&expr) {
            let family = ops::family(&series);
            let call = call.unwrap_or_default();
            let wanted: &[&str] = if CLUSTER_GAUGES.contains(&family.as_str()) {
                // The same count from every replica: max, never sum.
                &["max", "absent"]
            } else if HISTOGRAMS.contains(&family.as_str()) {
                &["rate"]
            } else if series.ends_with("_total") {
                &["rate", "increase"]
            } else {
                continue;
            };
            if !wanted.contains(&call.as_str()) {
                problems.push(format!(
                    "{at}: {series} is read by {call:?}, not {wanted:?}"
                ));
            }
        }
        for arguments in ops::call_arguments(&expr, "histogram_quantile") {
            let buckets = ops::raw_metric_names(&arguments);
            let keeps_le = ops::grouping_labels(&arguments)
                .iter()
                .any(|labels| labels.contains("le"));
            if buckets.is_empty() || !buckets.iter().all(|b| b.ends_with("_bucket")) || !keeps_le {
                problems.push(format!(
                    "{at}: histogram_quantile needs `sum by (le, ...) (rate(x_bucket[...]))`: {expr}"
                ));
            }
        }
    }
    fail_if_any(&problems, "series read the wrong way");
}

// ------------------------------------------------------------ promtool

/// promtool (Debian's `prometheus` package, which `scripts/tools.sh`
/// installs).
fn promtool() -> Command {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "promtool is not installed: run scripts/tools.sh (Debian package prometheus)"
    );
    Command::new("promtool")
}

fn run(mut command: Command) {
    let shown = format!("{command:?}");
    let out = command.output().expect("promtool runs");
    assert!(
        out.status.success(),
        "{shown}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    let mut check = promtool();
    check.arg("check").arg("rules").arg(ops::alerts_path());
    run(check);
    let mut test = promtool();
    test.current_dir(ops::ops_dir().join("prometheus"))
        .args(["test", "rules", "alerts_test.yml"]);
    run(test);
}

#[test]
fn promtool_parses_every_dashboard_query() {
    let mut check = promtool();
    // Each query as a recording rule, Grafana's variables filled in as
    // Grafana would (JSON is YAML).
    let rules: Vec<Json> = dashboard_exprs()
        .into_iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$channel", "WHATSAPP|EMAIL")
                .replace("$namespace", ".*")
                .replace("$task_queue", ".*");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard_queries.yml");
    std::fs::write(
        &file,
        json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .expect("write the dashboard's queries");
    check.arg("check").arg("rules").arg(&file);
    run(check);
}
