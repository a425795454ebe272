//! The search attributes a notification, a fan-out chunk or a batch starts
//! with, so every starter (the API, a fan-out, a trip's reminder) labels
//! them alike and ops find them by the same queries.

use crate::names::search_attributes as sa;
use busflow_activities::model::{ContactId, TenantId};
use busflow_activities::triggers::Trigger;
use temporalio_common::search_attributes::SearchAttributes;

/// A workflow that sends for `trigger`, before its first send.
pub fn pending(tenant_id: TenantId, trigger: Trigger, entity_refs: &[String]) -> SearchAttributes {
    SearchAttributes::new([
        sa::TENANT_ID.value_set(tenant_id.to_string()),
        sa::TRIGGER_EVENT.value_set(trigger.to_string()),
        sa::NOTIFICATION_STATUS.value_set("PENDING".to_owned()),
        sa::ENTITY_REFS.value_set(entity_refs.to_vec()),
    ])
}

/// One recipient's `NotificationWorkflow`: pending, and found by its contact.
pub fn notification(
    tenant_id: TenantId,
    trigger: Trigger,
    contact_id: ContactId,
    entity_refs: &[String],
) -> SearchAttributes {
    let mut labels = pending(tenant_id, trigger, entity_refs);
    labels.apply(sa::CONTACT_ID.value_set(contact_id.to_string()));
    labels
}
