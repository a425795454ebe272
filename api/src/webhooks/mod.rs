//! Provider webhooks: delivery receipts and inbound messages from Meta, SES
//! and SNS. Every handler verifies the provider's signature over the
//! raw body before it parses anything, and answers 2xx once the callback is
//! safely recorded — even for an id we do not know — so providers do not
//! retry it for days.

pub mod delivery;
pub mod inbound_email;
pub mod meta;
pub mod meta_signing;
pub mod mime;
pub mod ses;
pub mod sms_status;
pub mod sns;
pub mod sns_inbound;
pub mod sns_receiver;
pub mod sns_topics;
pub mod whatsapp_inbound;
