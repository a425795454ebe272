//! Provider webhooks: callbacks that providers (AWS SNS for SES events and
//! SMS-related notifications, Meta for WhatsApp) send to this service.
//! Each provider's submodule authenticates the call before anything in it is
//! trusted; the handlers that act on the events build on those modules.

pub mod sns;
