//! The channel account lifecycle: which status may follow which, and who
//! moved it. The database enforces the same table of moves
//! (`channel_account_may_move`, migration 014) and records every move in
//! `channel_account_status_history`; a test keeps the two tables equal.
//!
//! ```text
//! PENDING → VERIFYING → ACTIVE ⇄ ATTENTION      (ATTENTION → VERIFYING → ACTIVE)
//! any → DISCONNECTED → PENDING
//! ```

use crate::model::ChannelAccountStatus::{self, *};
use std::fmt;

/// Whether an account in `from` may move to `to`. Staying put is not a move.
pub fn may_move(from: ChannelAccountStatus, to: ChannelAccountStatus) -> bool {
    match from {
        Pending => matches!(to, Verifying | Active | Attention | Disconnected),
        Verifying => matches!(to, Active | Attention | Disconnected),
        Active => matches!(to, Verifying | Attention | Disconnected),
        // Back to ACTIVE only through a verification that passes.
        Attention => matches!(to, Verifying | Disconnected),
        // Connected again by a new provisioning.
        Disconnected => matches!(to, Pending),
    }
}

/// Who moved an account: recorded with each move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusActor {
    /// A provisioning or re-verification workflow.
    Provisioning,
    /// A send the provider refused for the account itself.
    Dispatch,
    /// A Hasura action by this user.
    Operator(String),
}

impl fmt::Display for StatusActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusActor::Provisioning => f.write_str("provisioning"),
            StatusActor::Dispatch => f.write_str("dispatch"),
            StatusActor::Operator(user) => write!(f, "operator:{user}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_verification_brings_an_account_back_from_attention() {
        assert!(!may_move(Attention, Active));
        assert!(may_move(Attention, Verifying));
        assert!(may_move(Verifying, Active));
    }

    #[test]
    fn every_status_can_be_disconnected_and_connected_again() {
        for &from in ChannelAccountStatus::ALL {
            assert_eq!(may_move(from, Disconnected), from != Disconnected, "{from}");
        }
        assert!(may_move(Disconnected, Pending));
        assert!(!may_move(Disconnected, Active));
    }

    #[test]
    fn staying_put_is_not_a_move() {
        for &status in ChannelAccountStatus::ALL {
            assert!(!may_move(status, status), "{status}");
        }
    }
}
