-- The communications schema: channel accounts, contacts, conversations,
-- messages, templates, read cursors, and the Hasura computed fields.
--
-- Conventions (Hasura-friendly): snake_case, enums as text + CHECK, tenant_id on
-- every row and in every unique key, composite (tenant_id, id) foreign keys so a
-- row can never point at another tenant's row.

-- Per-tenant settings this service needs; a tenant without a row gets defaults.
create table tenant_settings (
    tenant_id           uuid primary key,
    display_name        text not null default '',
    -- ISO 3166 region used to read national phone numbers (e.g. 'MX').
    default_region      text not null default 'MX' check (default_region ~ '^[A-Z]{2}$'),
    default_locale      text not null default 'es-MX',
    time_zone           text not null default 'America/Mexico_City',
    -- Non-urgent notifications wait while local time is in [quiet_start, quiet_end).
    quiet_hours_start   time,
    quiet_hours_end     time,
    reminder_lead       interval not null default interval '24 hours',
    -- Per trigger overrides: {"trip_delayed": {"chain": ["SMS","EMAIL"], "timeouts": {"SMS": "10m"}}}
    trigger_overrides   jsonb not null default '{}'::jsonb check (jsonb_typeof(trigger_overrides) = 'object'),
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now()
);

create table channel_accounts (
    id                   uuid not null default gen_random_uuid(),
    tenant_id            uuid not null,
    channel              text not null check (channel in ('WHATSAPP', 'EMAIL', 'SMS', 'WEBCHAT')),
    provider             text not null check (provider in ('META_CLOUD', 'AWS_SES', 'AWS_SNS', 'WEBCHAT')),
    display_name         text not null default '',
    status               text not null default 'PENDING'
                         check (status in ('PENDING', 'ACTIVE', 'SUSPENDED', 'DISCONNECTED')),
    -- SANDBOX accounts never leave the process: synthetic ids, simulated callbacks.
    mode                 text not null default 'LIVE' check (mode in ('LIVE', 'SANDBOX')),
    -- Non-secret settings: sender address, phone_number_id, configuration set, region...
    provider_config      jsonb not null default '{}'::jsonb check (jsonb_typeof(provider_config) = 'object'),
    -- Secrets (tokens, app secret, verify token, credentials), AES-256-GCM sealed:
    -- {"kid": "...", "nonce": "<b64>", "ciphertext": "<b64>"}. Kept apart from
    -- provider_config so Hasura permissions can hide the whole column.
    provider_secrets     jsonb,
    -- The provider-side id that routes inbound webhooks here (WABA phone_number_id,
    -- SES identity, origination number).
    external_account_id  text,
    attention_reason     text,
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now(),
    primary key (id),
    unique (tenant_id, id),
    unique (tenant_id, channel, external_account_id)
);
create index channel_accounts_tenant_channel_idx on channel_accounts (tenant_id, channel, status);

create table contacts (
    id                    uuid not null default gen_random_uuid(),
    tenant_id             uuid not null,
    kind                  text not null default 'CUSTOMER' check (kind in ('CUSTOMER', 'DRIVER', 'VENDOR')),
    display_name          text not null default '',
    -- Normalized: {"email": "lower@case", "phone": "+E164", "whatsapp": "+E164"}
    identifiers           jsonb not null default '{}'::jsonb check (jsonb_typeof(identifiers) = 'object'),
    passenger_profile_id  uuid,
    driver_id             uuid,
    vendor_id             uuid,
    locale                text,
    time_zone             text,
    opted_out_channels    text[] not null default '{}'
                          check (opted_out_channels <@ array['WHATSAPP', 'EMAIL', 'SMS', 'WEBCHAT']::text[]),
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),
    primary key (id),
    unique (tenant_id, id),
    unique (tenant_id, passenger_profile_id),
    unique (tenant_id, driver_id),
    unique (tenant_id, vendor_id)
);
create unique index contacts_email_uq on contacts (tenant_id, (identifiers ->> 'email'))
    where identifiers ? 'email';
create unique index contacts_phone_uq on contacts (tenant_id, (identifiers ->> 'phone'))
    where identifiers ? 'phone';
create unique index contacts_whatsapp_uq on contacts (tenant_id, (identifiers ->> 'whatsapp'))
    where identifiers ? 'whatsapp';

create table conversations (
    id                  uuid not null default gen_random_uuid(),
    tenant_id           uuid not null,
    contact_id          uuid not null,
    channel_account_id  uuid not null,
    status              text not null default 'OPEN' check (status in ('OPEN', 'RESOLVED', 'SNOOZED')),
    snoozed_until       timestamptz,
    -- Hasura x-hasura-user-id of the agent; NULL = in the shared queue.
    assigned_to         text,
    last_message_at     timestamptz,
    last_inbound_at     timestamptz,
    -- Soft links to other contexts, for the inbox sidebar (manual relationships).
    booking_id          uuid,
    trip_id             uuid,
    invoice_id          uuid,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    primary key (id),
    unique (tenant_id, id),
    foreign key (tenant_id, contact_id) references contacts (tenant_id, id),
    foreign key (tenant_id, channel_account_id) references channel_accounts (tenant_id, id),
    check ((status = 'SNOOZED') = (snoozed_until is not null))
);
create index conversations_inbox_idx on conversations (tenant_id, status, last_message_at desc);
-- At most one live (OPEN or SNOOZED) conversation per contact and channel account.
create unique index conversations_live_uq on conversations (tenant_id, contact_id, channel_account_id)
    where status in ('OPEN', 'SNOOZED');

create table messages (
    id                   uuid not null default gen_random_uuid(),
    tenant_id            uuid not null,
    conversation_id      uuid,
    contact_id           uuid,
    channel_account_id   uuid,
    direction            text not null check (direction in ('INBOUND', 'OUTBOUND')),
    channel              text not null check (channel in ('WHATSAPP', 'EMAIL', 'SMS', 'WEBCHAT')),
    status               text not null default 'QUEUED'
                         check (status in ('QUEUED', 'SENT', 'DELIVERED', 'READ', 'FAILED')),
    external_message_id  text,
    -- The Temporal workflow that owns this message, and its place in the channel chain.
    workflow_id          text,
    attempt              smallint not null default 1 check (attempt >= 1),
    -- Fallback: the message on the previous channel that this one replaces.
    replaces_message_id  uuid,
    trigger_event        text,
    template_key         text,
    subject              text,
    body                 text not null default '',
    body_html            text,
    failed_reason        text,
    sent_at              timestamptz,
    delivered_at         timestamptz,
    read_at              timestamptz,
    failed_at            timestamptz,
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now(),
    primary key (id),
    unique (tenant_id, id),
    foreign key (tenant_id, conversation_id) references conversations (tenant_id, id),
    foreign key (tenant_id, contact_id) references contacts (tenant_id, id),
    foreign key (tenant_id, channel_account_id) references channel_accounts (tenant_id, id),
    foreign key (tenant_id, replaces_message_id) references messages (tenant_id, id),
    check (status <> 'FAILED' or failed_reason is not null)
);
create unique index messages_external_id_uq on messages (tenant_id, channel, external_message_id)
    where external_message_id is not null;
-- Account-level provider callbacks (SES/SNS) find the tenant through the message.
create index messages_external_lookup_idx on messages (channel, external_message_id)
    where external_message_id is not null;
-- A workflow creates exactly one message per step of its chain, however often it retries.
create unique index messages_workflow_attempt_uq on messages (tenant_id, workflow_id, attempt)
    where workflow_id is not null;
create index messages_thread_idx on messages (conversation_id, created_at);
create index messages_stuck_scan_idx on messages (status, created_at);

create table notification_templates (
    id                      uuid not null default gen_random_uuid(),
    -- NULL = the platform default, used when the tenant has none.
    tenant_id               uuid,
    trigger_event           text not null,
    channel                 text not null check (channel in ('WHATSAPP', 'EMAIL', 'SMS', 'WEBCHAT')),
    locale                  text not null,
    subject                 text,
    body                    text not null,
    body_html               text,
    whatsapp_template_name  text,
    whatsapp_language       text,
    -- Ordered template expressions for the approved template's parameters:
    -- {"header": ["booking.booking_reference"], "body": ["contact.display_name", ...]}
    whatsapp_parameters     jsonb,
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now(),
    primary key (id),
    unique nulls not distinct (tenant_id, trigger_event, channel, locale)
);

create table conversation_read_cursors (
    tenant_id        uuid not null,
    conversation_id  uuid not null,
    agent_id         text not null,
    last_read_at     timestamptz not null,
    primary key (tenant_id, conversation_id, agent_id),
    foreign key (tenant_id, conversation_id) references conversations (tenant_id, id) on delete cascade
);

-- Hasura computed field on conversations: INBOUND messages newer than the
-- session user's read cursor (all of them when the user has no cursor yet).
create function conversation_unread_count(conversation conversations, hasura_session json)
returns integer
language sql stable
as $$
    select count(*)::integer
    from messages m
    where m.tenant_id = conversation.tenant_id
      and m.conversation_id = conversation.id
      and m.direction = 'INBOUND'
      and m.created_at > coalesce(
          (select c.last_read_at
             from conversation_read_cursors c
            where c.tenant_id = conversation.tenant_id
              and c.conversation_id = conversation.id
              and c.agent_id = hasura_session ->> 'x-hasura-user-id'),
          '-infinity'::timestamptz)
$$;
