//! End-to-end tests of busflow-comms against real parts: Postgres at
//! 127.0.0.1:5432, a Temporal dev server and a moto server started by the
//! harness from `.tools/` (run `scripts/tools.sh` once; the README's test
//! command does).

mod agent_replies;
mod channel_accounts;
mod codec;
mod connect_whatsapp;
mod demo;
mod edge;
mod email_domains;
mod fallback;
mod fanout;
mod hasura_events;
mod inbound_sms_email;
mod inbox;
mod lifecycles;
mod metrics;
mod notifications;
mod openapi;
#[path = "../shared/ops.rs"]
mod ops;
mod outages;
mod people;
mod platform_sms;
mod quiet_hours;
mod rate_limits;
mod retry;
mod schema;
mod ses_events;
mod sms_receipts;
mod snooze;
mod startup;
mod support;
mod threads;
mod traces;
mod trips;
mod unknown_outcomes;
mod watchdog;
mod webchat;
mod webchat_browser;
mod webchat_replies;
mod whatsapp;
mod whatsapp_inbound;
