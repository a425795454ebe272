-- The channel account lifecycle (activities/src/lifecycle.rs is its Rust
-- side; a test keeps the two tables of moves equal):
--
--   PENDING ──▶ VERIFYING ──▶ ACTIVE ◀──▶ ATTENTION
--      │            │           ▲  │          │
--      │            └───────────┼──┘◀─────────┘  (re-verify: ACTIVE or
--      ▼                        │                 ATTENTION → VERIFYING)
--   any state ──▶ DISCONNECTED ──▶ PENDING (connected again)
--
-- PENDING: created, provisioning not started or not through its first step.
-- VERIFYING: provisioning or re-verification is running.
-- ACTIVE: the only state in which the account is planned for a send.
-- ATTENTION: the provider refused the account itself (token expired, sender
--   suspended, domain no longer verified): sends fall back until it is fixed
--   and verified again.
-- DISCONNECTED: the operator took it away; it owns nothing any more.
--
-- Every change of status is recorded in channel_account_status_history by a
-- trigger, whoever wrote it; a move the lifecycle does not allow is refused
-- by the database itself.

alter table channel_accounts drop constraint channel_accounts_status_check;
update channel_accounts set status = 'ATTENTION' where status = 'SUSPENDED';
alter table channel_accounts
    add constraint channel_accounts_status_check
        check (status in ('PENDING', 'VERIFYING', 'ACTIVE', 'ATTENTION', 'DISCONNECTED'));

-- Why the account is in its status (the provider's refusal for ATTENTION).
alter table channel_accounts rename column attention_reason to status_reason;
alter table channel_accounts
    add column status_changed_at timestamptz not null default now(),
    -- Who moved it last: `provisioning`, `dispatch`, `operator:<user>`… from
    -- the transaction's `busflow.status_actor` setting, which the service sets
    -- (activities/src/store/channel_accounts.rs); `database:<role>` otherwise.
    add column status_changed_by text not null default 'database';

create function channel_account_may_move(from_status text, to_status text) returns boolean
language sql immutable as $$
    select case from_status
        when 'PENDING'      then to_status in ('VERIFYING', 'ACTIVE', 'ATTENTION', 'DISCONNECTED')
        when 'VERIFYING'    then to_status in ('ACTIVE', 'ATTENTION', 'DISCONNECTED')
        when 'ACTIVE'       then to_status in ('VERIFYING', 'ATTENTION', 'DISCONNECTED')
        when 'ATTENTION'    then to_status in ('VERIFYING', 'DISCONNECTED')
        when 'DISCONNECTED' then to_status in ('PENDING')
        else false
    end
$$;

create table channel_account_status_history (
    id                  bigint generated always as identity primary key,
    tenant_id           uuid not null,
    channel_account_id  uuid not null,
    channel             text not null references channels (name),
    -- NULL: the account was created in `to_status`.
    from_status         text,
    to_status           text not null,
    reason              text,
    changed_by          text not null,
    changed_at          timestamptz not null default now(),
    foreign key (tenant_id, channel_account_id)
        references channel_accounts (tenant_id, id) on delete cascade
);
create index channel_account_status_history_account_idx
    on channel_account_status_history (tenant_id, channel_account_id, id);

create function channel_accounts_check_move() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' then
        new.status_changed_at := now();
        new.status_changed_by := coalesce(nullif(current_setting('busflow.status_actor', true), ''),
                                          'database:' || current_user);
        return new;
    end if;
    if new.status is distinct from old.status then
        if not channel_account_may_move(old.status, new.status) then
            raise exception 'channel account % may not move from % to %', old.id, old.status, new.status
                using errcode = 'check_violation';
        end if;
        new.status_changed_at := now();
        new.status_changed_by := coalesce(nullif(current_setting('busflow.status_actor', true), ''),
                                          'database:' || current_user);
    end if;
    return new;
end
$$;

create trigger channel_accounts_check_move
    before insert or update on channel_accounts
    for each row execute function channel_accounts_check_move();

create function channel_accounts_record_move() returns trigger
language plpgsql as $$
begin
    if tg_op = 'INSERT' or new.status is distinct from old.status then
        insert into channel_account_status_history
            (tenant_id, channel_account_id, channel, from_status, to_status, reason, changed_by, changed_at)
        values (new.tenant_id, new.id, new.channel, case when tg_op = 'UPDATE' then old.status end,
                new.status, new.status_reason, new.status_changed_by, new.status_changed_at);
    end if;
    return null;
end
$$;

create trigger channel_accounts_record_move
    after insert or update of status on channel_accounts
    for each row execute function channel_accounts_record_move();

insert into channel_account_status_history
    (tenant_id, channel_account_id, channel, from_status, to_status, reason, changed_by, changed_at)
select tenant_id, id, channel, null, status, status_reason, 'migration', updated_at
  from channel_accounts;
