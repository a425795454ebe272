-- Connecting a tenant's email domain on SES (workflows/src/verify_email_domain.rs).

-- The DNS records the operator must publish for the domain: Easy DKIM's
-- three CNAMEs and, with a custom MAIL FROM domain, its MX and SPF TXT.
-- Written when SES creates the identity; Hasura shows them to the operator.
create table email_domain_dns_records (
    tenant_id           uuid not null,
    channel_account_id  uuid not null,
    record_type         text not null check (record_type in ('CNAME', 'MX', 'TXT')),
    name                text not null,
    value               text not null,
    purpose             text not null check (purpose in ('DKIM', 'MAIL_FROM_MX', 'MAIL_FROM_SPF')),
    created_at          timestamptz not null default now(),
    primary key (tenant_id, channel_account_id, record_type, name),
    foreign key (tenant_id, channel_account_id)
        references channel_accounts (tenant_id, id) on delete cascade
);

-- A sending domain belongs to one tenant at a time.
create unique index channel_accounts_email_domain_once
    on channel_accounts ((provider_config ->> 'domain'))
    where channel = 'EMAIL' and status <> 'DISCONNECTED' and provider_config ? 'domain';
