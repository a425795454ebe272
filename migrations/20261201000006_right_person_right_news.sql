-- Every event means what it says and reaches the person it is for:
-- people who share an address, drivers and vendors as contacts, templates
-- per audience (the platform's now live in `templates/`, compiled into the
-- binary), the last trip delay passengers were told, and a dead-letter table
-- for inbound messages nobody can be found for.

-- People share addresses (a parent books for a child): identifiers no longer
-- pick one contact. Lookups stay indexed.
drop index contacts_email_uq;
drop index contacts_phone_uq;
drop index contacts_whatsapp_uq;
create index contacts_email_idx on contacts (tenant_id, (identifiers ->> 'email'))
    where identifiers ? 'email';
create index contacts_phone_idx on contacts (tenant_id, (identifiers ->> 'phone'))
    where identifiers ? 'phone';
create index contacts_whatsapp_idx on contacts (tenant_id, (identifiers ->> 'whatsapp'))
    where identifiers ? 'whatsapp';
-- Meta's business-scoped user id (BSUID), for WhatsApp users known without a number.
create index contacts_whatsapp_user_idx on contacts (tenant_id, (identifiers ->> 'whatsapp_user_id'))
    where identifiers ? 'whatsapp_user_id';
-- Fields of the source row that could not be used, with why (never the
-- value): {"phone": "not a valid number for its country"}.
alter table contacts
    add column identifier_problems jsonb not null default '{}'::jsonb
        check (jsonb_typeof(identifier_problems) = 'object');

-- Templates per audience: a trip-wide notification reaches the driver with
-- the driver's words. Platform defaults (tenant_id NULL) are files now.
delete from notification_templates where tenant_id is null;
alter table notification_templates
    add column audience text not null default 'CUSTOMER'
        check (audience in ('CUSTOMER', 'DRIVER', 'VENDOR'));
alter table notification_templates
    drop constraint notification_templates_tenant_id_trigger_event_channel_loca_key;
alter table notification_templates
    add constraint notification_templates_key
        unique nulls not distinct (tenant_id, trigger_event, channel, locale, audience);

-- A further delay is news once it grows by this many minutes over the delay
-- the passengers were last told.
alter table tenant_settings
    add column delay_notice_minutes integer not null default 15 check (delay_notice_minutes > 0);

-- The delay the passengers of a trip were last told, and the event that told
-- them (its own retries may claim it again; another event may not).
alter table trips
    add column delay_minutes integer,
    add column notified_delay_minutes integer,
    add column notified_delay_event text;

-- Inbound messages that cannot be attributed to anyone: kept whole, counted
-- in /metrics, replayable (`busflow-comms dead-letters replay`).
create table inbound_dead_letters (
    id            bigint generated always as identity primary key,
    tenant_id     uuid,
    provider      text not null check (provider in ('META_CLOUD', 'AWS_SES', 'AWS_SNS', 'WEBCHAT')),
    -- Why, as a code for the metric (`NO_SENDER`, `UNKNOWN_ACCOUNT`...), and in words.
    code          text not null,
    reason        text not null,
    -- The provider's payload as received (the part that could not be used).
    payload       jsonb not null,
    received_at   timestamptz not null default now(),
    replayed_at   timestamptz,
    replay_result text
);
create index inbound_dead_letters_open_idx on inbound_dead_letters (provider, received_at)
    where replayed_at is null;
