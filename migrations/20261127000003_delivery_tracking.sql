-- Delivery tracking: provider template parameters on messages, and the
-- provider callbacks we received (kept even when they arrive before the
-- message knows its external id, and applied when it does).

-- Rendered provider-side template parameters (WhatsApp approved templates):
-- {"name": "...", "language": "es_MX", "header": [...], "body": [...]}
alter table messages add column whatsapp_template jsonb;

create table delivery_callbacks (
    id                   bigint generated always as identity primary key,
    -- Known at once for per-tenant webhooks (Meta); for account-level ones
    -- (SES, SNS) it is learned from the message when the callback is matched.
    tenant_id            uuid,
    channel              text not null check (channel in ('WHATSAPP', 'EMAIL', 'SMS', 'WEBCHAT')),
    external_message_id  text not null,
    status               text not null check (status in ('SENT', 'DELIVERED', 'READ', 'FAILED')),
    reason               text,
    occurred_at          timestamptz not null,
    received_at          timestamptz not null default now(),
    -- Set once the callback has been applied to its message.
    message_id           uuid,
    applied_at           timestamptz,
    -- Provider-specific detail for audit (event type, bounce type, error codes).
    detail               jsonb not null default '{}'::jsonb
);
create index delivery_callbacks_pending_idx on delivery_callbacks (channel, external_message_id)
    where applied_at is null;
create index delivery_callbacks_message_idx on delivery_callbacks (tenant_id, message_id);

-- What each notification workflow was asked to do, so ops can start a fresh
-- delivery of a failed one (retryMessage) with the same recipient and data.
create table notification_requests (
    tenant_id        uuid not null,
    workflow_id      text not null,
    contact_id       uuid not null,
    trigger_event    text not null,
    source_event_id  text not null,
    variables        jsonb not null default '{}'::jsonb,
    created_at       timestamptz not null default now(),
    primary key (tenant_id, workflow_id),
    foreign key (tenant_id, contact_id) references contacts (tenant_id, id)
);

-- The forward order of delivery statuses; FAILED is terminal and reachable
-- only from QUEUED or SENT.
create function message_status_rank(status text) returns integer
language sql immutable
as $$
    select case status
        when 'QUEUED' then 0
        when 'SENT' then 1
        when 'DELIVERED' then 2
        when 'READ' then 3
        when 'FAILED' then 4
    end
$$;
