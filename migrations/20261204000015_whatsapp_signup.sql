-- Connecting a tenant's WhatsApp number through Meta's Embedded Signup
-- (workflows/src/connect_whatsapp.rs).

-- Each signup the operator finished, by its single-use code (its SHA-256:
-- the code itself is sealed with the account's secrets until it is
-- exchanged). A code belongs to one account of one tenant: the same code
-- again is the same signup (Hasura retrying the action), never a new one.
create table whatsapp_signups (
    code_sha256         text primary key,
    tenant_id           uuid not null,
    channel_account_id  uuid not null,
    waba_id             text not null,
    phone_number_id     text not null,
    workflow_id         text not null,
    created_at          timestamptz not null default now(),
    foreign key (tenant_id, channel_account_id)
        references channel_accounts (tenant_id, id) on delete cascade
);
create index whatsapp_signups_account_idx on whatsapp_signups (tenant_id, channel_account_id);

-- The message templates of each connected WhatsApp Business Account, as Meta
-- lists them (read at connection and by the template-sync schedule), so the
-- operator can map them to triggers (`notification_templates.whatsapp_template_name`).
create table whatsapp_message_templates (
    tenant_id           uuid not null,
    channel_account_id  uuid not null,
    name                text not null,
    language            text not null,
    meta_template_id    text not null,
    -- APPROVED, PENDING, REJECTED, PAUSED, DISABLED…: only APPROVED sends.
    status              text not null,
    category            text,
    parameter_format    text,
    components          jsonb not null default '[]'::jsonb,
    synced_at           timestamptz not null default now(),
    primary key (tenant_id, channel_account_id, name, language),
    foreign key (tenant_id, channel_account_id)
        references channel_accounts (tenant_id, id) on delete cascade
);

-- A business phone number or WhatsApp Business Account belongs to one
-- tenant at a time: the first to connect it holds it until it disconnects.
create unique index channel_accounts_whatsapp_number_once
    on channel_accounts (external_account_id)
    where channel = 'WHATSAPP' and status <> 'DISCONNECTED' and mode = 'LIVE';
