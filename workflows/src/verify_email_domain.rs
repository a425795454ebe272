//! `VerifyEmailDomainWorkflow` (`verify-email-domain/{tenant}/{account}/{n}`):
//! connects a tenant's sending domain on SES, each step visible in the
//! Temporal UI:
//!
//! 1. the account moves to VERIFYING;
//! 2. the domain identity is created with Easy DKIM, and the DNS records the
//!    operator must publish are recorded (`email_domain_dns_records`);
//! 3. SES is asked again and again, waiting longer each time (a durable
//!    timer), until it finds the records, for at most 72 h;
//! 4. the configuration set and its event destination for receipts are set up;
//! 5. the account moves to ACTIVE.
//!
//! A domain SES fails, or one still unverified after 72 h, leaves the
//! account in ATTENTION with the reason; `reverifyChannelAccount` starts
//! again once the records are published.

use crate::provisioning::{ConnectOutcome, activate, attention, begin, provider_step, refusal};
use busflow_activities::email_domains::{DomainCheck, DomainConnection, EmailDomainActivities};
use std::time::Duration;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{TimerResult, WorkflowContext, WorkflowResult, WorkflowTermination};

#[workflow]
#[derive(Default)]
pub struct VerifyEmailDomainWorkflow;

#[workflow_methods]
impl VerifyEmailDomainWorkflow {
    #[run(name = "VerifyEmailDomainWorkflow")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        connection: DomainConnection,
    ) -> WorkflowResult<ConnectOutcome> {
        let account = connection.account;
        let patience = connection.patience;
        let started = ctx.workflow_time();
        if let Some(refused) = begin(ctx, account).await? {
            return Ok(refused);
        }
        const CREATE: &str = "create the domain identity with Easy DKIM";
        ctx.set_current_details(CREATE.to_owned());
        let created = ctx
            .execute_activity(
                EmailDomainActivities::create_domain_identity,
                account,
                provider_step(CREATE),
            )
            .await;
        if let Some(reason) = refusal(created) {
            return attention(ctx, account, CREATE, reason).await;
        }

        const CHECK: &str = "wait for SES to find the DNS records";
        let mut wait = Duration::from_secs(patience.first_poll_secs.max(1));
        loop {
            let checked = ctx
                .execute_activity(
                    EmailDomainActivities::check_domain_identity,
                    account,
                    provider_step("ask SES whether the domain is verified"),
                )
                .await;
            match checked {
                Ok(DomainCheck::Verified) => break,
                Ok(DomainCheck::Failed { reason }) => {
                    return attention(ctx, account, CHECK, reason).await;
                }
                Ok(DomainCheck::Pending) => {}
                Err(e) => {
                    let reason = format!("SES kept failing: {e}");
                    return attention(ctx, account, CHECK, reason).await;
                }
            }
            let waited = match (ctx.workflow_time(), started) {
                (Some(now), Some(start)) => now.duration_since(start).unwrap_or_default(),
                _ => Duration::ZERO,
            };
            if waited >= Duration::from_secs(patience.give_up_after_secs) {
                let hours = patience.give_up_after_secs / 3600;
                let within = if hours > 0 {
                    format!("{hours} h")
                } else {
                    format!("{} s", patience.give_up_after_secs)
                };
                let reason = format!(
                    "SES did not find the DNS records within {within}; publish them and re-verify"
                );
                return attention(ctx, account, CHECK, reason).await;
            }
            ctx.set_current_details(format!(
                "{CHECK}: not yet, asking again in {}s",
                wait.as_secs()
            ));
            if ctx.timer(wait).await == TimerResult::Cancelled {
                return Err(WorkflowTermination::cancelled());
            }
            wait = (wait * 2).min(Duration::from_secs(patience.max_poll_secs.max(1)));
        }

        const RECEIPTS: &str = "set up the configuration set that publishes receipts";
        ctx.set_current_details(RECEIPTS.to_owned());
        let receipts = ctx
            .execute_activity(
                EmailDomainActivities::set_up_email_receipts,
                connection.clone(),
                provider_step(RECEIPTS),
            )
            .await;
        if let Some(reason) = refusal(receipts) {
            return attention(ctx, account, RECEIPTS, reason).await;
        }
        if let Some(overtaken) = activate(ctx, account).await? {
            return Ok(overtaken);
        }
        ctx.set_current_details("verified: the domain sends".to_owned());
        Ok(ConnectOutcome::Connected {
            approved: 0,
            templates: 0,
        })
    }
}
