-- Inbound email that SES does not vouch for: a virus, spam, a sender whose
-- own domain's DMARC check failed, or a sender neither SPF nor DKIM
-- authenticates. It reached a tenant's address, so the tenant sees it here,
-- but it never joins a contact's conversation as theirs: the `From` header
-- of such a mail is only a claim.
create table inbound_quarantine (
    id                  uuid primary key default gen_random_uuid(),
    tenant_id           uuid not null,
    channel_account_id  uuid not null,
    channel             text not null check (channel in ('EMAIL')),
    -- The provider's id of the received mail (SES `mail.messageId`).
    external_message_id text not null,
    reason              text not null check (reason in
                            ('VIRUS', 'SPAM', 'DMARC_FAIL', 'SENDER_NOT_AUTHENTICATED')),
    -- Who the mail says it is from: not an identity.
    claimed_sender      text not null,
    claimed_sender_name text,
    subject             text,
    -- The text; never kept for a mail with a virus.
    body                text,
    -- SES's verdicts as received: {"spf": "FAIL", "dkim": "PASS", "dmarc": "FAIL",
    -- "dmarc_policy": "reject", "spam": "PASS", "virus": "PASS"}.
    verdicts            jsonb not null,
    -- The notification minus the raw message, with the attachment list.
    content             jsonb not null,
    received_at         timestamptz,
    created_at          timestamptz not null default now(),
    foreign key (tenant_id, channel_account_id) references channel_accounts (tenant_id, id),
    -- SES redelivers: one row per mail and account.
    unique (tenant_id, channel_account_id, external_message_id)
);
create index inbound_quarantine_tenant_idx on inbound_quarantine (tenant_id, created_at desc);
