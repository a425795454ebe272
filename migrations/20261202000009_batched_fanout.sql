-- Fan-out in chunks: one chunk workflow sends the messages of many
-- recipients, so a trip's delay reaches its passengers at the provider's pace
-- rather than at one workflow per passenger.

-- `workflow_id` stays the notification's key, notify/{tenant}/{event}/{contact}
-- (with `attempt`, unique: one message per recipient and channel step,
-- whoever sends it). A message sent by a fan-out chunk names that chunk here;
-- NULL means its own NotificationWorkflow (`workflow_id`) sends it.
alter table messages add column batch_workflow_id text;
comment on column messages.batch_workflow_id is
    'The fan-out chunk workflow that sends this message; NULL: the NotificationWorkflow named by workflow_id.';

-- The chunk that took on a notification. A recipient is taken on by one
-- chunk (or one NotificationWorkflow) only, whatever pages a reset or a
-- replayed event cuts.
alter table notification_requests add column owner_workflow_id text;

-- WhatsApp messaging tiers as a counter instead of a scan of 24 hours of
-- messages on every send: the recipients counted per account and hour, and
-- when each recipient was last counted. The window sums 25 hourly buckets,
-- so a recipient stays counted for 24 to 25 hours: the count can run over the
-- truth by an hour's worth, never under it, and the tier is never exceeded.
create table whatsapp_tier_recipients (
    tenant_id           uuid not null,
    channel_account_id  uuid not null,
    contact_id          uuid not null,
    counted_at          timestamptz not null,
    primary key (tenant_id, channel_account_id, contact_id)
);

create table whatsapp_tier_counts (
    tenant_id           uuid not null,
    channel_account_id  uuid not null,
    hour                timestamptz not null,
    recipients          integer not null default 0,
    primary key (tenant_id, channel_account_id, hour)
);

-- Counts a business-initiated send to `p_contact` against the account's tier
-- of `p_limit` unique recipients per rolling 24 hours. Returns 0 when it may
-- go (a recipient counted in the last 24 hours is free), else the seconds
-- until the oldest hour leaves the window.
create function whatsapp_tier_take(
    p_tenant uuid,
    p_account uuid,
    p_contact uuid,
    p_limit integer
) returns double precision
language plpgsql as $$
declare
    now_ts timestamptz;
    counted timestamptz;
    total bigint;
    oldest timestamptz;
begin
    perform pg_advisory_xact_lock(hashtext('busflow.whatsapp_tier'), hashtext(p_account::text));
    now_ts := clock_timestamp();
    select r.counted_at into counted from whatsapp_tier_recipients r
     where r.tenant_id = p_tenant and r.channel_account_id = p_account and r.contact_id = p_contact;
    if counted is not null and counted > now_ts - interval '24 hours' then
        return 0;
    end if;
    select coalesce(sum(c.recipients), 0), min(c.hour) into total, oldest from whatsapp_tier_counts c
     where c.tenant_id = p_tenant and c.channel_account_id = p_account
       and c.hour >= date_trunc('hour', now_ts) - interval '24 hours';
    if total >= p_limit then
        return greatest(extract(epoch from oldest + interval '25 hours' - now_ts), 1);
    end if;
    insert into whatsapp_tier_recipients (tenant_id, channel_account_id, contact_id, counted_at)
    values (p_tenant, p_account, p_contact, now_ts)
    on conflict (tenant_id, channel_account_id, contact_id) do update set counted_at = excluded.counted_at;
    insert into whatsapp_tier_counts (tenant_id, channel_account_id, hour, recipients)
    values (p_tenant, p_account, date_trunc('hour', now_ts), 1)
    on conflict (tenant_id, channel_account_id, hour)
    do update set recipients = whatsapp_tier_counts.recipients + 1;
    delete from whatsapp_tier_counts c
     where c.tenant_id = p_tenant and c.channel_account_id = p_account
       and c.hour < date_trunc('hour', now_ts) - interval '48 hours';
    return 0;
end
$$;

-- `rate_limit_take` for senders that queue instead of asking again: books
-- the send's slot in every bucket and returns the seconds until that slot
-- (0: now), so many concurrent senders of one fan-out each wait exactly once
-- and the rate is still never exceeded. A slot further away than
-- `p_max_wait` seconds is not booked: the wait comes back negated.
create function rate_limit_reserve(
    p_tenant uuid,
    p_buckets text[],
    p_per_second double precision[],
    p_burst integer[],
    p_cost integer[],
    p_max_wait double precision
) returns double precision
language plpgsql as $$
declare
    i integer;
    n integer := coalesce(array_length(p_buckets, 1), 0);
    emission interval;
    cost integer;
    tats timestamptz[] := '{}';
    current_tat timestamptz;
    now_ts timestamptz;
    wait double precision := 0;
    allow_at timestamptz;
begin
    for i in 1..n loop
        insert into rate_limit_buckets (tenant_id, bucket, tat)
        values (p_tenant, p_buckets[i], '-infinity')
        on conflict (tenant_id, bucket) do nothing;
        select b.tat into current_tat from rate_limit_buckets b
         where b.tenant_id = p_tenant and b.bucket = p_buckets[i]
         for update;
        tats := tats || current_tat;
    end loop;
    now_ts := clock_timestamp();
    for i in 1..n loop
        emission := make_interval(secs => 1.0 / p_per_second[i]);
        cost := least(greatest(p_cost[i], 1), p_burst[i]);
        allow_at := greatest(tats[i], now_ts) + emission * cost - emission * p_burst[i];
        if allow_at > now_ts then
            wait := greatest(wait, extract(epoch from allow_at - now_ts));
        end if;
    end loop;
    if wait > p_max_wait then
        return -wait;
    end if;
    -- Every bucket books the same moment: the slowest bucket's.
    for i in 1..n loop
        emission := make_interval(secs => 1.0 / p_per_second[i]);
        cost := least(greatest(p_cost[i], 1), p_burst[i]);
        update rate_limit_buckets
           set tat = greatest(tats[i], now_ts + make_interval(secs => wait)) + emission * cost
         where tenant_id = p_tenant and bucket = p_buckets[i];
    end loop;
    return wait;
end
$$;

-- Records a provider's acceptance in one round trip: takes the provider
-- id's lock (the one `record_callback` takes), moves the message to SENT,
-- and says whether a receipt for that id came first and waits to be
-- applied. Inside the function the update reads after the lock is held, so
-- a receipt committed while this waited for the lock is seen.
create function mark_message_sent(p_tenant uuid, p_id uuid, p_external text)
returns table (sent_channel text, sent_status text, pending boolean)
language plpgsql as $$
begin
    perform pg_advisory_xact_lock(hashtext('busflow.messages.external_message_id'), hashtext(p_external));
    return query
    with updated as (
        update messages m
           set status = case when m.status in ('QUEUED', 'SENDING') then 'SENT' else m.status end,
               external_message_id = coalesce(m.external_message_id, p_external),
               sent_at = coalesce(m.sent_at, now()),
               updated_at = now()
         where m.tenant_id = p_tenant and m.id = p_id and m.status <> 'FAILED'
        returning m.channel, m.status)
    select u.channel, u.status,
           exists(select 1 from delivery_callbacks d
                   where d.channel = u.channel and d.external_message_id = p_external
                     and d.applied_at is null)
      from updated u;
end
$$;

-- One GCRA: taking is booking with no wait allowed (a send that would wait
-- books nothing and is told how long).
create or replace function rate_limit_take(
    p_tenant uuid,
    p_buckets text[],
    p_per_second double precision[],
    p_burst integer[],
    p_cost integer[]
) returns double precision
language sql as $$
    select abs(rate_limit_reserve(p_tenant, p_buckets, p_per_second, p_burst, p_cost, 0))
$$;
