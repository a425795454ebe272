//! Crash points for the fault suite. With `BUSFLOW_FAULT_ABORT_AT=<point>`
//! the process aborts (no unwinding, nothing flushed: what SIGKILL does) the
//! `BUSFLOW_FAULT_ABORT_AFTER`-th time (default: the first) it reaches the
//! named point of the dispatch path. With `BUSFLOW_FAULT_ABORT_CHANNEL`
//! (`WHATSAPP`, `EMAIL`, ...) only that channel's passages count, so "killed
//! after SES accepted" is that, and never the SMS fallback that follows.
//! Unset, as in every deployment, a point costs one read of a value set once.

use crate::model::Channel;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A named moment of the dispatch path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The send is claimed; the provider has not been called.
    Claimed,
    /// The provider accepted the message; nothing is recorded yet.
    ProviderAccepted,
    /// The acceptance is recorded.
    Recorded,
}

impl Point {
    pub const ALL: [Point; 3] = [Point::Claimed, Point::ProviderAccepted, Point::Recorded];

    pub fn as_str(self) -> &'static str {
        match self {
            Point::Claimed => "claimed",
            Point::ProviderAccepted => "provider_accepted",
            Point::Recorded => "recorded",
        }
    }
}

struct Armed {
    point: Point,
    /// Only this channel's passages count; every channel's when `None`.
    channel: Option<Channel>,
    after: u64,
    reached: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let wanted = std::env::var("BUSFLOW_FAULT_ABORT_AT").ok()?;
            let point = Point::ALL.into_iter().find(|p| p.as_str() == wanted)?;
            let after = std::env::var("BUSFLOW_FAULT_ABORT_AFTER")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let channel = std::env::var("BUSFLOW_FAULT_ABORT_CHANNEL")
                .ok()
                .and_then(|c| c.parse().ok());
            Some(Armed {
                point,
                channel,
                after,
                reached: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process here if the fault suite armed this point (for this
/// channel).
pub fn reached(point: Point, channel: Channel) {
    if let Some(armed) = armed()
        && armed.point == point
        && armed.channel.is_none_or(|c| c == channel)
        && armed.reached.fetch_add(1, Ordering::Relaxed) + 1 == armed.after
    {
        eprintln!("BUSFLOW_FAULT_ABORT_AT={}: aborting", point.as_str());
        std::process::abort();
    }
}
