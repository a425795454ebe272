//! History events of one closed workflow (what a notification costs the
//! server, and on Temporal Cloud, in billable actions), and the dev
//! server's own count of activities it handed out eagerly.

use super::stack::Stack;
use anyhow::Context;
use std::time::{Duration, Instant};
use temporalio_client::{
    UntypedWorkflow, WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowFetchHistoryOptions,
};

/// A workflow's history once it has closed.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Event types in order (`WorkflowExecutionStarted`, …).
    pub events: Vec<String>,
}

impl History {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Workflow tasks it took.
    pub fn workflow_tasks(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.as_str() == "WorkflowTaskStarted")
            .count()
    }
}

/// Waits (up to a minute) for `workflow_id` to close, then reads its history.
pub async fn of(stack: &Stack, workflow_id: &str) -> anyhow::Result<History> {
    let handle = stack
        .client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = handle
            .describe(WorkflowDescribeOptions::default())
            .await
            .with_context(|| format!("describing {workflow_id}"))?
            .status();
        if status != WorkflowExecutionStatus::Running {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{workflow_id} still runs after a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .with_context(|| format!("history of {workflow_id}"))?;
    Ok(History {
        events: events
            .iter()
            .map(|e| {
                let name = e.event_type().as_str_name();
                name.strip_prefix("EVENT_TYPE_")
                    .map(pascal_case)
                    .unwrap_or_else(|| name.to_owned())
            })
            .collect(),
    })
}

/// `WORKFLOW_TASK_STARTED` → `WorkflowTaskStarted`.
fn pascal_case(screaming: &str) -> String {
    screaming
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_string() + &chars.as_str().to_lowercase()
            })
        })
        .collect()
}

/// What the dev server's Prometheus counters say about activities so far.
#[derive(Debug, Clone, Default)]
pub struct ActivityCounts {
    /// `activity_eager_execution` by task queue (as [`prometheus_label`]
    /// spells it): the history service counts each activity it hands back
    /// in a workflow task's reply.
    pub eager_by_queue: Vec<(String, u64)>,
    /// `command{commandType="ScheduleActivityTask"}`, every queue together.
    pub scheduled: u64,
}

/// Eager starts among scheduled activities: the floor's and everybody else's.
#[derive(Debug, Clone, Default)]
pub struct EagerReport {
    pub ours_eager: u64,
    pub ours_scheduled: u64,
    pub floor_eager: u64,
    pub floor_scheduled: u64,
}

impl ActivityCounts {
    /// Splits the counts between the floor's queue (which scheduled
    /// `floor_scheduled` activities, one per workflow) and the rest (ours).
    pub fn split(&self, floor_queue: &str, floor_scheduled: u64) -> EagerReport {
        let floor_eager: u64 = self
            .eager_by_queue
            .iter()
            .filter(|(q, _)| q == floor_queue)
            .map(|(_, n)| n)
            .sum();
        let all_eager: u64 = self.eager_by_queue.iter().map(|(_, n)| n).sum();
        EagerReport {
            ours_eager: all_eager - floor_eager,
            ours_scheduled: self.scheduled.saturating_sub(floor_scheduled),
            floor_eager,
            floor_scheduled,
        }
    }
}

pub async fn server_activity_counts(
    http: &reqwest::Client,
    metrics_url: &str,
) -> anyhow::Result<ActivityCounts> {
    let text = http
        .get(metrics_url)
        .send()
        .await
        .with_context(|| format!("scraping {metrics_url}"))?
        .text()
        .await?;
    Ok(ActivityCounts {
        eager_by_queue: counter_by_label(&text, "activity_eager_execution", "taskqueue"),
        scheduled: counter_by_label(&text, "command", "commandType")
            .into_iter()
            .filter(|(kind, _)| kind == "ScheduleActivityTask")
            .map(|(_, n)| n)
            .sum(),
    })
}

/// A task queue name as the server's Prometheus labels spell it (every
/// character that is not a letter or a digit becomes `_`).
pub fn prometheus_label(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Sums a Prometheus counter's samples by one label.
fn counter_by_label(text: &str, metric: &str, label: &str) -> Vec<(String, u64)> {
    let mut sums: std::collections::BTreeMap<String, f64> = Default::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') || rest.starts_with("_total ") => ("", rest),
            None => continue,
        };
        let value = value
            .split_whitespace()
            .last()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default();
        let key = labels
            .split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{label}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        *sums.entry(key).or_default() += value;
    }
    sums.into_iter().map(|(k, v)| (k, v as u64)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_counter_by_task_queue() {
        let text = "# TYPE activity_eager_execution counter\n\
            activity_eager_execution{namespace=\"default\",taskqueue=\"bench\"} 7\n\
            activity_eager_execution{namespace=\"default\",taskqueue=\"bench\",x=\"y\"} 3\n\
            activity_eager_execution_other{taskqueue=\"bench\"} 100\n\
            activity_eager_execution{namespace=\"default\",taskqueue=\"bench_floor\"} 2\n";
        assert_eq!(
            counter_by_label(text, "activity_eager_execution", "taskqueue"),
            vec![("bench".to_owned(), 10), ("bench_floor".to_owned(), 2)]
        );
        assert_eq!(pascal_case("WORKFLOW_TASK_STARTED"), "WorkflowTaskStarted");
        assert_eq!(prometheus_label("bench-floor"), "bench_floor");
    }
}
