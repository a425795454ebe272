//! The benchmark's closing summary: one plain-text table with aligned
//! columns, built only from what the runs measured.

use super::cpu::CpuSeconds;
use super::fanout::FanoutRun;
use super::history::{EagerReport, History};
use super::pg_counter::RoundTrips;
use super::reminders::ReminderMemory;
use super::single::{Measured, Path};
use super::stats::{Latency, median};

/// One delivery path's repetitions, paced run and sample history.
#[derive(Debug, Clone)]
pub struct PathReport {
    pub path: Path,
    /// (ours, the floor of the same repetition).
    pub reps: Vec<(Measured, Measured)>,
    pub paced: Measured,
    pub history: History,
}

impl PathReport {
    fn ours_per_second(&self) -> Vec<f64> {
        self.reps.iter().map(|(o, _)| o.per_second).collect()
    }
    fn floor_per_second(&self) -> Vec<f64> {
        self.reps.iter().map(|(_, f)| f.per_second).collect()
    }
    fn ratios(&self) -> Vec<f64> {
        self.reps
            .iter()
            .map(|(o, f)| o.per_second / f.per_second)
            .collect()
    }
    /// Round trips over every repetition, per notification: (all, pings).
    fn round_trips_per_notification(&self) -> (f64, f64) {
        round_trips_per(self.reps.iter().map(|(o, _)| o))
    }

    /// The same during the floor's runs (nothing of ours should run then).
    fn floor_round_trips_per_workflow(&self) -> (f64, f64) {
        round_trips_per(self.reps.iter().map(|(_, f)| f))
    }
}

/// Round trips over the runs given, per item done: (all, pings).
fn round_trips_per<'a>(runs: impl Iterator<Item = &'a Measured>) -> (f64, f64) {
    let (trips, done) = runs.fold((RoundTrips::default(), 0usize), |(t, d), m| {
        (
            RoundTrips {
                total: t.total + m.round_trips.total,
                pings: t.pings + m.round_trips.pings,
            },
            d + m.done,
        )
    });
    let per = |n: u64| {
        if done == 0 {
            f64::NAN
        } else {
            n as f64 / done as f64
        }
    };
    (per(trips.total), per(trips.pings))
}

/// CPU-seconds per 1000 over all the runs given.
fn cpu_per_1000<'a>(runs: impl Iterator<Item = &'a Measured>) -> CpuSeconds {
    let (sum, done) = runs.fold((CpuSeconds::default(), 0usize), |(s, d), m| {
        (
            CpuSeconds {
                server: s.server + m.cpu.server,
                postgres: s.postgres + m.cpu.postgres,
                ours: s.ours + m.cpu.ours,
            },
            d + m.done,
        )
    });
    sum.per(done, 1000.0)
}

/// The fan-out scenarios and their floor.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    pub floor: FanoutRun,
    pub capped: FanoutRun,
    pub uncapped: FanoutRun,
    pub uncapped_rate: f64,
}

/// Everything the table shows.
#[derive(Debug, Clone)]
pub struct Summary {
    pub notifications: usize,
    pub concurrency: usize,
    pub rate: f64,
    pub paths: Vec<PathReport>,
    /// The floor at the paced rate (one run for every path).
    pub paced_floor: Measured,
    pub floor_history: History,
    pub fanout: Option<FanoutReport>,
    pub webchat: Option<super::webchat::ReplyLatency>,
    pub reminders: Option<ReminderMemory>,
    pub eager: Option<EagerReport>,
}

/// Rows of cells, printed with aligned columns.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn row(&mut self, cells: &[&str]) {
        self.rows
            .push(cells.iter().map(|c| (*c).to_owned()).collect());
    }

    fn print(&self) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let rule: String = widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-");
        for (i, row) in self.rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
                .collect();
            println!("{}", line.join(" | ").trim_end());
            if i == 0 {
                println!("{rule}");
            }
        }
    }
}

fn per_second(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}/s"))
}

fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn cpu(c: &CpuSeconds) -> String {
    format!("{:.1} / {:.1} / {:.1}", c.server, c.postgres, c.ours)
}

fn target(met: bool, what: &str) -> String {
    format!("target {what}: {}", if met { "met" } else { "NOT met" })
}

fn latency(l: &Latency) -> String {
    format!("{l}")
}

fn path_name(path: Path) -> &'static str {
    match path {
        Path::NoReceipt => "no receipt (SMS)",
        Path::Receipt => "receipt (WhatsApp)",
    }
}

pub fn print(summary: &Summary) {
    let mut t = Table { rows: Vec::new() };
    t.row(&["measure", "ours", "floor", "ours/floor", "notes"]);
    for p in &summary.paths {
        let name = path_name(p.path);
        let ratios = p.ratios();
        t.row(&[
            &format!("single notification, {name}: notifications/s"),
            &per_second(median(&p.ours_per_second())),
            &per_second(median(&p.floor_per_second())),
            &ratio(median(&ratios)),
            &format!(
                "median of {} reps of {}; ratios {}",
                ratios.len(),
                summary.notifications,
                ratios
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ]);
    }
    for p in &summary.paths {
        let events = p.history.len();
        let note = match p.path {
            Path::NoReceipt => target(events <= 12, "<= 12"),
            Path::Receipt => format!("{} workflow tasks", p.history.workflow_tasks()),
        };
        t.row(&[
            &format!("history events, {}", path_name(p.path)),
            &events.to_string(),
            &summary.floor_history.len().to_string(),
            "-",
            &note,
        ]);
    }
    for p in &summary.paths {
        let (total, pings) = p.round_trips_per_notification();
        let (floor, _) = p.floor_round_trips_per_workflow();
        t.row(&[
            &format!("SQL round trips / notification, {}", path_name(p.path)),
            &format!("{total:.1}"),
            &format!("{floor:.1}"),
            "-",
            &{
                let queries = total - pings;
                let counted = format!(
                    "{queries:.1} statements + {pings:.1} pings sqlx 0.8 sends as each connection goes back to its pool (not configurable)"
                );
                match p.path {
                    Path::NoReceipt => {
                        format!("{} for statements; {counted}", target(queries <= 8.0, "<= 8"))
                    }
                    Path::Receipt => format!("{counted}; receipts: one statement each"),
                }
            },
        ]);
    }
    for p in &summary.paths {
        t.row(&[
            &format!(
                "CPU-s / 1000 notifications, {}: server / Postgres / us",
                path_name(p.path)
            ),
            &cpu(&cpu_per_1000(p.reps.iter().map(|(o, _)| o))),
            &cpu(&cpu_per_1000(p.reps.iter().map(|(_, f)| f))),
            "-",
            "Postgres: every backend of the shared cluster; us: API + worker + load generator",
        ]);
    }
    for (i, p) in summary.paths.iter().enumerate() {
        let floor = if i == 0 {
            latency(&summary.paced_floor.latency)
        } else {
            "(same)".to_owned()
        };
        t.row(&[
            &format!(
                "p50 / p95 / p99 at {:.1}/s, {}: accepted -> {}",
                summary.rate,
                path_name(p.path),
                match p.path {
                    Path::NoReceipt => "SENT",
                    Path::Receipt => "DELIVERED",
                }
            ),
            &latency(&p.paced.latency),
            &floor,
            "-",
            &match (&p.paced.sent_latency, p.path) {
                (Some(sent), Path::Receipt) => {
                    format!("-> SENT {sent}; the sandbox posts DELIVERED 1.4 s after the send")
                }
                _ => "floor: start -> close".to_owned(),
            },
        ]);
    }
    if let Some(f) = &summary.fanout {
        let note = |r: &FanoutRun| {
            let mut note = format!(
                "{} of {} DELIVERED, first after {:.1} s",
                r.done, r.recipients, r.first_after_secs
            );
            if r.failed > 0 {
                note.push_str(&format!(", {} FAILED", r.failed));
            }
            if r.timed_out {
                note.push_str(", TIMED OUT (rate so far)");
            }
            let cpu_per_1000 = r.cpu.per(r.done, 1000.0);
            note.push_str(&format!(
                "; {:.1} SQL round trips/msg; CPU-s/1000 msgs {}",
                r.round_trips.total as f64 / r.done.max(1) as f64,
                cpu(&cpu_per_1000)
            ));
            note
        };
        let recipients = f.capped.recipients;
        t.row(&[
            &format!("fan-out {recipients}, one account at its cap (80/s): msg/s"),
            &per_second(Some(f.capped.per_second)),
            &per_second(Some(f.floor.per_second)),
            &ratio(Some(f.capped.per_second / f.floor.per_second)),
            &note(&f.capped),
        ]);
        t.row(&[
            &format!(
                "fan-out {recipients}, uncapped (one account at {:.0}/s): msg/s",
                f.uncapped_rate
            ),
            &per_second(Some(f.uncapped.per_second)),
            &per_second(Some(f.floor.per_second)),
            &ratio(Some(f.uncapped.per_second / f.floor.per_second)),
            &note(&f.uncapped),
        ]);
        t.row(&[
            &format!("fan-out {recipients} over 5 accounts"),
            "not run",
            "-",
            "-",
            "not expressible: the planner sends on a tenant's oldest active account per channel",
        ]);
        t.row(&[
            "fan-out floor: insert + update to SENT per message",
            "-",
            &per_second(Some(f.floor.per_second)),
            "-",
            &format!(
                "{} in flight, no Temporal; {:.1} SQL round trips/msg; CPU-s/1000 msgs {}",
                super::fanout::FLOOR_IN_FLIGHT,
                f.floor.round_trips.total as f64 / f.floor.done.max(1) as f64,
                cpu(&f.floor.cpu.per(f.floor.done, 1000.0))
            ),
        ]);
    }
    if let Some(w) = &summary.webchat {
        t.row(&[
            &format!(
                "webchat: agent reply -> visitor's widget, p50/p95/p99 ({} replies)",
                w.replies
            ),
            &w.latency.to_string(),
            "-",
            "-",
            &format!(
                "{} visitors waiting at once; from the action's answer to the long poll's",
                w.in_flight
            ),
        ]);
    }
    if let Some(r) = &summary.reminders {
        let growth = r.growth_mib();
        t.row(&[
            &format!(
                "reminder memory, {} of {} parked: worker RSS growth",
                r.parked, r.reminders
            ),
            &format!("{growth:.1} MiB ({:.1} MB)", growth * 1.048_576),
            "-",
            "-",
            &format!(
                "{}; worker alone: {:.0} -> {:.0} MiB",
                target(growth * 1.048_576 < 50.0, "< 50 MB"),
                r.before_mib,
                r.after_mib
            ),
        ]);
    }
    if let Some(e) = &summary.eager {
        t.row(&[
            "activities started eagerly (server's count)",
            &format!("{} of {}", e.ours_eager, e.ours_scheduled),
            &format!("{} of {}", e.floor_eager, e.floor_scheduled),
            "-",
            "activity_eager_execution and ScheduleActivityTask commands over the whole benchmark",
        ]);
    }
    println!();
    println!(
        "summary ({} in flight; in-memory Temporal dev server, eager activities on)",
        summary.concurrency
    );
    t.print();
}
