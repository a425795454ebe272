//! The one definition of every name that crosses a process boundary: task
//! queue, workflow ids, workflow types, signals and search attributes. The API,
//! the worker, tests and ops tooling use these, never re-typed strings.

use busflow_activities::model::{ContactId, TenantId};
use temporalio_common::search_attributes::SearchAttributeKey;

/// Default task queue of the worker.
pub const TASK_QUEUE: &str = "busflow-comms";

/// Workflow type names (stable across refactors; `#[run(name = ...)]`).
pub mod workflow_types {
    pub const NOTIFICATION: &str = "NotificationWorkflow";
    pub const SNOOZE: &str = "SnoozeWorkflow";
    pub const BATCH_NOTIFICATION: &str = "BatchNotificationWorkflow";
    pub const FANOUT_CHUNK: &str = "FanoutChunkWorkflow";
    pub const TRIP_REMINDER: &str = "TripReminderWorkflow";
    pub const CONNECT_WHATSAPP: &str = "ConnectWhatsAppWorkflow";
    pub const TEMPLATE_SYNC: &str = "TemplateSyncWorkflow";
    pub const VERIFY_EMAIL_DOMAIN: &str = "VerifyEmailDomainWorkflow";
}

/// `verify-email-domain/{tenant}/{account}/{n}`: one verification of the
/// account per state it starts from (`n`: its number of recorded moves), so
/// a repeated call while one runs finds it.
pub fn verify_email_domain_workflow_id(
    tenant: TenantId,
    account: busflow_activities::model::ChannelAccountId,
    moves: usize,
) -> String {
    format!("verify-email-domain/{tenant}/{account}/{moves}")
}

/// `connect-whatsapp/{tenant}/{account}/{signup}`: one connection per
/// Embedded Signup (`signup`: the first 16 hex digits of its code's
/// SHA-256), so the same signup again finds the same workflow.
pub fn connect_whatsapp_workflow_id(
    tenant: TenantId,
    account: busflow_activities::model::ChannelAccountId,
    signup: &str,
) -> String {
    format!("connect-whatsapp/{tenant}/{account}/{signup}")
}

/// The Temporal Schedule that reads every connected WhatsApp account's
/// templates again, and the id of the workflow it starts.
pub const TEMPLATE_SYNC_SCHEDULE_ID: &str = "busflow-whatsapp-template-sync";
pub const TEMPLATE_SYNC_WORKFLOW_ID: &str = "whatsapp-template-sync";

/// `notify/{tenant}/{source event id}/{contact}`: one notification per event
/// and recipient, so a replayed Hasura event finds the same workflow.
pub fn notification_workflow_id(
    tenant: TenantId,
    source_event_id: &str,
    contact: ContactId,
) -> String {
    busflow_activities::model::notification_key(tenant, source_event_id, contact)
}

/// `reply/{tenant}/{conversation}/{client message id}`: an agent's reply,
/// idempotent on the id the agent's client chose.
pub fn agent_reply_workflow_id(
    tenant: TenantId,
    conversation: uuid::Uuid,
    client_message_id: &str,
) -> String {
    format!("reply/{tenant}/{conversation}/{client_message_id}")
}

/// `fanout/{tenant}/{source event id}`: one event, many recipients; its
/// children are chunks of them ([`fanout_chunk_workflow_id`]).
pub fn fanout_workflow_id(tenant: TenantId, source_event_id: &str) -> String {
    format!("fanout/{tenant}/{source_event_id}")
}

/// `{fanout id}/chunk/{hash of the recipients}`: one chunk of a fan-out. The
/// same recipients give the same id (FNV-1a over their ids), so a reset of
/// the fan-out finds the chunk it started before.
pub fn fanout_chunk_workflow_id(fanout_workflow_id: &str, contacts: &[ContactId]) -> String {
    let hash = fnv1a(contacts.iter().flat_map(|c| *c.0.as_bytes()));
    format!("{fanout_workflow_id}/chunk/{hash:016x}")
}

/// The chunk of a trip's recipients in one span: the hash of the span's
/// ends, so the same span again is the same chunk.
pub fn fanout_span_workflow_id(
    fanout_workflow_id: &str,
    span: &busflow_activities::store::trips::RecipientSpan,
) -> String {
    let after = span.after.map(|c| *c.0.as_bytes()).unwrap_or_default();
    let hash = fnv1a(after.into_iter().chain(*span.last.0.as_bytes()));
    format!("{fanout_workflow_id}/chunk/{hash:016x}")
}

/// FNV-1a: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// `trip-reminder/{tenant}/{trip}`: the entity workflow of one trip's reminder.
pub fn trip_reminder_workflow_id(tenant: TenantId, trip: uuid::Uuid) -> String {
    format!("trip-reminder/{tenant}/{trip}")
}

/// The source event id of a trip's reminder for one departure time: a
/// passenger gets one reminder per departure, however often it is replayed.
pub fn trip_reminder_event_id(trip: uuid::Uuid, departure_at_ms: i64) -> String {
    format!("trip-reminder-{trip}-{departure_at_ms}")
}

/// The watchdog's schedule, and the id its sweeps run under.
pub const WATCHDOG_SCHEDULE_ID: &str = "busflow-stuck-message-watchdog";
pub const WATCHDOG_WORKFLOW_ID: &str = "watchdog/stuck-messages";

/// `snooze/{tenant}/{conversation}`: one snooze timer per conversation.
pub fn snooze_workflow_id(tenant: TenantId, conversation: uuid::Uuid) -> String {
    format!("snooze/{tenant}/{conversation}")
}

/// Search attributes this service sets. Registered on the dev server by
/// `temporal-dev.yml`; register them on any other cluster before deploying.
pub mod search_attributes {
    use super::SearchAttributeKey;

    pub const TENANT_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("TenantId");
    pub const TRIGGER_EVENT: SearchAttributeKey<String> =
        SearchAttributeKey::keyword("TriggerEvent");
    pub const CHANNEL: SearchAttributeKey<String> = SearchAttributeKey::keyword("Channel");
    /// The notification's current message.
    pub const MESSAGE_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("MessageId");
    /// Every message the notification has sent, oldest first, so an earlier
    /// attempt's id finds it too. A fan-out chunk has none (its hundreds of
    /// ids exceed Temporal's 2 KB per value): `messages.batch_workflow_id`
    /// names the chunk that sent a message.
    pub const MESSAGE_IDS: SearchAttributeKey<Vec<String>> =
        SearchAttributeKey::keyword_list("MessageIds");
    /// The one recipient of a `NotificationWorkflow` (`contacts.id`).
    pub const CONTACT_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("ContactId");
    pub const NOTIFICATION_STATUS: SearchAttributeKey<String> =
        SearchAttributeKey::keyword("NotificationStatus");
    /// Domain entities the notification is about: `booking:<id>`, `trip:<id>`...
    pub const ENTITY_REFS: SearchAttributeKey<Vec<String>> =
        SearchAttributeKey::keyword_list("EntityRefs");

    /// Every custom attribute with its Temporal type, for registration.
    pub fn registrations() -> [(&'static str, &'static str); 8] {
        [
            (TENANT_ID.name(), "Keyword"),
            (TRIGGER_EVENT.name(), "Keyword"),
            (CHANNEL.name(), "Keyword"),
            (MESSAGE_ID.name(), "Keyword"),
            (MESSAGE_IDS.name(), "KeywordList"),
            (CONTACT_ID.name(), "Keyword"),
            (NOTIFICATION_STATUS.name(), "Keyword"),
            (ENTITY_REFS.name(), "KeywordList"),
        ]
    }
}

/// Memo keys shown in the Temporal UI.
pub mod memo {
    pub const SUMMARY: &str = "summary";
    /// A batch's or a trip reminder's counts so far.
    pub const PROGRESS: &str = "progress";
}
