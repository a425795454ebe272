//! `ConnectWhatsAppWorkflow` (`connect-whatsapp/{tenant}/{account}/{signup}`):
//! connects a tenant's WhatsApp number after Meta's Embedded Signup, one
//! idempotent, retried step at a time, each visible in the Temporal UI:
//!
//! 1. the account moves to VERIFYING;
//! 2. the signup code is exchanged for the business token (sealed);
//! 3. the number is registered for the Cloud API;
//! 4. the platform app is subscribed to the WABA with the tenant's webhook;
//! 5. the WABA's message templates are read;
//! 6. the account moves to ACTIVE.
//!
//! A step Meta refuses for good (a used code, a PIN mismatch, no access to
//! the WABA) or one that keeps failing for an hour ends the workflow with
//! the account in ATTENTION and the reason; the workflow itself completes,
//! so ops see the outcome, not a failure.
//!
//! `TemplateSyncWorkflow` runs step 5 again for one account (the
//! template-sync schedule starts one per ACTIVE WhatsApp account).

use crate::provisioning::{
    ConnectOutcome, activate, attention, begin, kept_failing, provider_step, refusal,
};
use crate::steps::postgres_step;
use busflow_activities::model::ChannelAccountStatus;
use busflow_activities::provisioning::{
    ConnectRequest, ProvisioningActivities, Settle, TemplateSync,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

#[workflow]
#[derive(Default)]
pub struct ConnectWhatsAppWorkflow;

#[workflow_methods]
impl ConnectWhatsAppWorkflow {
    #[run(name = "ConnectWhatsAppWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        connection: ConnectRequest,
    ) -> WorkflowResult<ConnectOutcome> {
        let account = connection.account;
        if let Some(refused) = begin(ctx, account).await? {
            return Ok(refused);
        }
        const EXCHANGE: &str = "exchange the signup code for the business token";
        ctx.set_current_details(EXCHANGE.to_owned());
        let exchanged = ctx
            .execute_activity(
                ProvisioningActivities::exchange_signup_code,
                connection.clone(),
                provider_step(EXCHANGE),
            )
            .await;
        if let Some(reason) = refusal(exchanged) {
            return attention(ctx, account, EXCHANGE, reason).await;
        }
        const REGISTER: &str = "register the number for the Cloud API";
        ctx.set_current_details(REGISTER.to_owned());
        let registered = ctx
            .execute_activity(
                ProvisioningActivities::register_phone_number,
                account,
                provider_step(REGISTER),
            )
            .await;
        if let Some(reason) = refusal(registered) {
            return attention(ctx, account, REGISTER, reason).await;
        }
        const SUBSCRIBE: &str = "subscribe the app to the WABA with the tenant's webhook";
        ctx.set_current_details(SUBSCRIBE.to_owned());
        let subscribed = ctx
            .execute_activity(
                ProvisioningActivities::subscribe_webhooks,
                account,
                provider_step(SUBSCRIBE),
            )
            .await;
        if let Some(reason) = refusal(subscribed) {
            return attention(ctx, account, SUBSCRIBE, reason).await;
        }
        let summary = "read the WABA's message templates";
        ctx.set_current_details(summary.to_owned());
        let synced = ctx
            .execute_activity(
                ProvisioningActivities::sync_whatsapp_templates,
                account,
                provider_step(summary),
            )
            .await;
        let (approved, templates) = match synced {
            Ok(TemplateSync::Synced { approved, total }) => (approved, total),
            Ok(TemplateSync::Refused { reason }) => {
                return attention(ctx, account, summary, reason).await;
            }
            Err(e) => {
                return attention(ctx, account, summary, kept_failing(e)).await;
            }
        };
        if let Some(overtaken) = activate(ctx, account).await? {
            return Ok(overtaken);
        }
        ctx.set_current_details(format!(
            "connected: {approved} of {templates} templates approved"
        ));
        Ok(ConnectOutcome::Connected {
            approved,
            templates,
        })
    }
}

/// What one template sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSyncReport {
    pub synced: u32,
    /// Accounts Meta refused (moved to ATTENTION) or that kept failing.
    pub refused: u32,
}

/// `TemplateSyncWorkflow`: reads the templates of every ACTIVE WhatsApp
/// account again, started by the Temporal Schedule
/// `busflow-whatsapp-template-sync`. An account whose token Meta refuses
/// moves to ATTENTION.
#[workflow]
#[derive(Default)]
pub struct TemplateSyncWorkflow;

#[workflow_methods]
impl TemplateSyncWorkflow {
    #[run(name = "TemplateSyncWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        _input: (),
    ) -> WorkflowResult<TemplateSyncReport> {
        let accounts = ctx
            .execute_local_activity(
                ProvisioningActivities::connected_whatsapp_accounts,
                (),
                postgres_step(
                    "list the connected WhatsApp accounts",
                    Duration::from_secs(10),
                ),
            )
            .await?;
        let mut report = TemplateSyncReport::default();
        for account in accounts {
            let synced = ctx
                .execute_activity(
                    ProvisioningActivities::sync_whatsapp_templates,
                    account,
                    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
                        .retry_policy(RetryPolicy::builder().maximum_attempts(3).build())
                        .summary(format!(
                            "read the templates of {}",
                            account.channel_account_id
                        ))
                        .build(),
                )
                .await;
            match synced {
                Ok(TemplateSync::Synced { .. }) => report.synced += 1,
                Ok(TemplateSync::Refused { reason }) => {
                    report.refused += 1;
                    ctx.execute_local_activity(
                        ProvisioningActivities::settle_provisioning,
                        Settle {
                            account,
                            to: ChannelAccountStatus::Attention,
                            reason: Some(format!("reading the message templates: {reason}")),
                        },
                        postgres_step("move the account to ATTENTION", Duration::from_secs(10)),
                    )
                    .await?;
                }
                // Meta away: the next sync tries again.
                Err(_) => report.refused += 1,
            }
        }
        ctx.set_current_details(format!(
            "{} synced, {} refused",
            report.synced, report.refused
        ));
        Ok(report)
    }
}
