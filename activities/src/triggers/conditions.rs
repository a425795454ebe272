//! When a write is news: conditions over a row write as Hasura reports it
//! (`op`, `event.data.old`, `event.data.new`). They read only the row, so
//! every event of one write — whichever trigger it came through, in whatever
//! order they arrive — reaches the same verdict.

use super::status;
use serde_json::Value;

/// The operation of a row write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    Insert,
    Update,
    Delete,
    /// Invoked by hand from the Hasura console: the current row, as if just
    /// written.
    Manual,
}

/// One row write: the rows before and after.
#[derive(Debug, Clone, Copy)]
pub struct RowWrite<'a> {
    pub op: WriteOp,
    pub old: Option<&'a Value>,
    pub new: Option<&'a Value>,
}

impl RowWrite<'_> {
    fn new_field(&self, column: &str) -> Option<&Value> {
        self.new
            .and_then(|row| row.get(column))
            .filter(|v| !v.is_null())
    }

    fn old_field(&self, column: &str) -> Option<&Value> {
        self.old
            .and_then(|row| row.get(column))
            .filter(|v| !v.is_null())
    }

    fn new_status(&self) -> Option<&str> {
        self.new_field("status").and_then(Value::as_str)
    }

    fn old_status(&self) -> Option<&str> {
        self.old_field("status").and_then(Value::as_str)
    }

    /// Whether an UPDATE changed the column. A column the old row does not
    /// carry at all counts as unchanged: Hasura always sends whole rows, so
    /// only a hand-made event lacks it, and it must not read as news.
    fn changed(&self, column: &str) -> bool {
        let carried = self.old.is_some_and(|row| row.get(column).is_some());
        carried && self.old_field(column) != self.new_field(column)
    }

    /// The row's `delay_minutes` (0 when absent).
    pub fn delay_minutes(row: Option<&Value>) -> i64 {
        row.and_then(|r| r.get("delay_minutes"))
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0)
    }
}

/// When a write notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// An update moves `status` into `status` from another one (or, with
    /// `on_insert`, the row is also news when inserted in it).
    EntersStatus {
        status: &'static str,
        on_insert: bool,
    },
    /// The row is inserted.
    Inserted,
    /// An update changes one of `columns` (while `status` is one of
    /// `status_in`, when given).
    Changed {
        columns: &'static [&'static str],
        status_in: Option<&'static [&'static str]>,
    },
    /// A trip's delay: `status` becomes DELAYED, or `delay_minutes` grows
    /// while it is DELAYED. (Whether the growth is big enough to tell the
    /// passengers again is the tenant's threshold, decided against the last
    /// delay they were told.)
    DelayGrows,
}

impl Condition {
    pub fn holds(&self, write: &RowWrite<'_>) -> bool {
        let inserted = matches!(write.op, WriteOp::Insert | WriteOp::Manual);
        let updated = write.op == WriteOp::Update;
        match *self {
            Condition::EntersStatus { status, on_insert } => {
                write.new_status() == Some(status)
                    && ((inserted && on_insert) || (updated && write.old_status() != Some(status)))
            }
            Condition::Inserted => inserted,
            Condition::Changed { columns, status_in } => {
                updated
                    && columns.iter().any(|c| write.changed(c))
                    && status_in.is_none_or(|allowed| {
                        write.new_status().is_some_and(|s| allowed.contains(&s))
                    })
            }
            Condition::DelayGrows => {
                updated
                    && write.new_status() == Some(status::DELAYED)
                    && (write.old_status() != Some(status::DELAYED)
                        || RowWrite::delay_minutes(write.new) > RowWrite::delay_minutes(write.old))
            }
        }
    }

    /// The columns the condition reads: an update trigger must listen to
    /// them, or Hasura never sends the writes that are news.
    pub fn columns(&self) -> Vec<&'static str> {
        match *self {
            Condition::EntersStatus { .. } => vec!["status"],
            Condition::Inserted => vec![],
            // `status_in` filters on the row's current status, which every
            // event carries whole: only a change of `columns` is news.
            Condition::Changed { columns, .. } => columns.to_vec(),
            Condition::DelayGrows => vec!["status", "delay_minutes"],
        }
    }

    /// Whether the condition can hold for an INSERT, an UPDATE.
    pub fn on_insert(&self) -> bool {
        match self {
            Condition::EntersStatus { on_insert, .. } => *on_insert,
            Condition::Inserted => true,
            Condition::Changed { .. } | Condition::DelayGrows => false,
        }
    }

    pub fn on_update(&self) -> bool {
        !matches!(self, Condition::Inserted)
    }

    /// The condition in words, for refusals and the trigger table of
    /// `hasura/README.md`.
    pub fn describe(&self) -> String {
        match *self {
            Condition::EntersStatus {
                status,
                on_insert: true,
            } => {
                format!(
                    "`status` becomes {status} (inserted as {status}, or updated from another status)"
                )
            }
            Condition::EntersStatus {
                status,
                on_insert: false,
            } => {
                format!("an update moves `status` to {status} from another status")
            }
            Condition::Inserted => "a row is inserted".to_owned(),
            Condition::Changed { columns, status_in } => {
                let columns = columns
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                match status_in {
                    Some(allowed) => {
                        format!(
                            "an update changes {columns} while `status` is {}",
                            allowed.join(", ")
                        )
                    }
                    None => format!("an update changes {columns}"),
                }
            }
            Condition::DelayGrows => {
                "`status` becomes DELAYED, or `delay_minutes` grows while DELAYED \
                 by at least the tenant's `delay_notice_minutes` (15) over the delay last notified"
                    .to_owned()
            }
        }
    }
}
