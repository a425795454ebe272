//! Replaying inbound messages that were kept as dead letters, once what
//! stopped them is fixed (an account's `phone_number_id` corrected, say):
//! `busflow-comms dead-letters replay`. A replay that uses the message
//! records it in the inbox (deduplicated as any delivery) and takes it out
//! of the `busflow_inbound_dead_letters` count; one that still cannot
//! leaves it, noting why.

use crate::temporal::TemporalGateway;
use crate::webhooks::{meta, sns_inbound};
use busflow_activities::model::Provider;
use busflow_activities::store::dead_letters;
use sqlx::PgPool;

/// What replaying one dead letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub id: i64,
    pub used: bool,
    pub result: String,
}

/// Replays every open dead letter (or the one with `id`), oldest first.
pub async fn replay(
    pool: &PgPool,
    temporal: &TemporalGateway,
    id: Option<i64>,
) -> anyhow::Result<Vec<Replayed>> {
    let mut report = Vec::new();
    for letter in dead_letters::open(pool, id).await? {
        let recorded = match letter.provider {
            Provider::MetaCloud => meta::replay(pool, temporal, &letter)
                .await?
                .map(|r| r.messages),
            Provider::AwsSns | Provider::AwsSes => {
                sns_inbound::replay(&sns_inbound::Inbox { pool, temporal }, &letter).await?
            }
            // The widget's messages always name their visitor.
            Provider::Webchat => None,
        };
        let (used, result) = match recorded {
            Some(messages) => (true, format!("recorded {messages} message(s) in the inbox")),
            None => (false, format!("still unusable: {}", letter.reason)),
        };
        if used {
            dead_letters::mark_replayed(pool, letter.id, &result).await?;
        } else {
            dead_letters::note_attempt(pool, letter.id, &result).await?;
        }
        report.push(Replayed {
            id: letter.id,
            used,
            result,
        });
    }
    Ok(report)
}
