-- Scheduled and bulk messaging: the trips and bookings this service learns
-- from Hasura events (who is on which trip, when it departs), per-account
-- send-rate limits and the GCRA state every worker shares, and the platform
-- templates of the trip notifications.

-- A trip as its last applied Hasura event described it. Events arrive at
-- least once and out of order: a row only moves to a newer `source_version`
-- (the event's created_at).
create table trips (
    tenant_id       uuid not null,
    id              uuid not null,
    departure_at    timestamptz,
    status          text not null default 'SCHEDULED',
    driver_id       uuid,
    -- The row as Hasura sent it, for templates (`trip.*`).
    data            jsonb not null default '{}'::jsonb check (jsonb_typeof(data) = 'object'),
    source_version  timestamptz not null,
    updated_at      timestamptz not null default now(),
    primary key (tenant_id, id)
);

-- Who is booked on which trip: the recipients of a trip-wide fan-out.
create table trip_bookings (
    tenant_id       uuid not null,
    booking_id      uuid not null,
    trip_id         uuid not null,
    contact_id      uuid not null,
    status          text not null check (status in ('CONFIRMED', 'CANCELLED')),
    source_version  timestamptz not null,
    updated_at      timestamptz not null default now(),
    primary key (tenant_id, booking_id),
    foreign key (tenant_id, contact_id) references contacts (tenant_id, id)
);
create index trip_bookings_passengers_idx on trip_bookings (tenant_id, trip_id, contact_id)
    where status = 'CONFIRMED';

-- Send-rate limits per channel account. NULL means the channel's default:
-- WhatsApp 80 messages/s (Meta's default per number), SES 14 messages/s,
-- SMS 20 message parts/s; webchat is not limited.
alter table channel_accounts
    add column max_send_rate   double precision check (max_send_rate > 0),
    -- How many sends may go back to back before the rate applies (NULL = one second's worth).
    add column send_burst      integer check (send_burst >= 1),
    -- WhatsApp messaging limit: unique users sent business-initiated
    -- (template) messages per rolling 24 h. NULL = not enforced here.
    add column messaging_tier  text check (messaging_tier in ('TIER_250', 'TIER_2K', 'TIER_10K', 'TIER_100K', 'UNLIMITED')),
    -- WhatsApp pair limit: messages to one user allowed back to back before
    -- Meta's one per 6 s applies (NULL = 45, Meta's documented burst).
    add column pair_burst      integer check (pair_burst >= 1);

-- GCRA state: per bucket, the theoretical arrival time at which the bucket
-- is empty again. Shared by every worker through Postgres.
create table rate_limit_buckets (
    tenant_id   uuid not null,
    bucket      text not null,
    tat         timestamptz not null,
    primary key (tenant_id, bucket)
);

-- Takes `cost` from every bucket at once, or from none: returns 0 when taken,
-- else the seconds until all of them would allow it. Buckets are locked in
-- the order given; callers pass them sorted so two takers cannot deadlock.
create function rate_limit_take(
    p_tenant uuid,
    p_buckets text[],
    p_per_second double precision[],
    p_burst integer[],
    p_cost integer[]
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
    -- The clock is read after the locks: a taker that waited for a lock must
    -- not judge by the time it started waiting.
    now_ts := clock_timestamp();
    for i in 1..n loop
        emission := make_interval(secs => 1.0 / p_per_second[i]);
        cost := least(greatest(p_cost[i], 1), p_burst[i]);
        allow_at := greatest(tats[i], now_ts) + emission * cost - emission * p_burst[i];
        if allow_at > now_ts then
            wait := greatest(wait, extract(epoch from allow_at - now_ts));
        end if;
    end loop;
    if wait > 0 then
        return wait;
    end if;
    for i in 1..n loop
        emission := make_interval(secs => 1.0 / p_per_second[i]);
        cost := least(greatest(p_cost[i], 1), p_burst[i]);
        update rate_limit_buckets
           set tat = greatest(tats[i], now_ts) + emission * cost
         where tenant_id = p_tenant and bucket = p_buckets[i];
    end loop;
    return 0;
end
$$;

-- Trip notifications: plain and short; `trip.departure_at` is always given
-- (the reminder and the fan-out add `trip.departure_local`, the departure in
-- the tenant's time zone).
insert into notification_templates (tenant_id, trigger_event, channel, locale, subject, body, body_html)
values
    (null, 'trip_reminder', 'EMAIL', 'es',
     'Recordatorio: tu viaje sale el {{ trip.departure_local }}',
     E'Hola {{ contact.first_name }},\n\nTe recordamos que tu viaje sale el {{ trip.departure_local }}.\n\n{{ tenant.display_name }}',
     '<p>Hola {{ contact.first_name }},</p><p>Te recordamos que tu viaje sale el <strong>{{ trip.departure_local }}</strong>.</p><p>{{ tenant.display_name }}</p>'),
    (null, 'trip_reminder', 'EMAIL', 'en',
     'Reminder: your trip departs {{ trip.departure_local }}',
     E'Hi {{ contact.first_name }},\n\nA reminder that your trip departs {{ trip.departure_local }}.\n\n{{ tenant.display_name }}',
     '<p>Hi {{ contact.first_name }},</p><p>A reminder that your trip departs <strong>{{ trip.departure_local }}</strong>.</p><p>{{ tenant.display_name }}</p>'),
    (null, 'trip_delayed', 'EMAIL', 'es',
     'Tu viaje está retrasado',
     E'Hola {{ contact.first_name }},\n\nTu viaje está retrasado. Nueva salida: {{ trip.departure_local }}.\n\n{{ tenant.display_name }}',
     '<p>Hola {{ contact.first_name }},</p><p>Tu viaje está retrasado. Nueva salida: <strong>{{ trip.departure_local }}</strong>.</p><p>{{ tenant.display_name }}</p>'),
    (null, 'trip_delayed', 'EMAIL', 'en',
     'Your trip is delayed',
     E'Hi {{ contact.first_name }},\n\nYour trip is delayed. New departure: {{ trip.departure_local }}.\n\n{{ tenant.display_name }}',
     '<p>Hi {{ contact.first_name }},</p><p>Your trip is delayed. New departure: <strong>{{ trip.departure_local }}</strong>.</p><p>{{ tenant.display_name }}</p>'),
    (null, 'trip_cancelled', 'EMAIL', 'es',
     'Tu viaje fue cancelado',
     E'Hola {{ contact.first_name }},\n\nTu viaje del {{ trip.departure_local }} fue cancelado. Te contactaremos para reprogramarlo.\n\n{{ tenant.display_name }}',
     '<p>Hola {{ contact.first_name }},</p><p>Tu viaje del <strong>{{ trip.departure_local }}</strong> fue cancelado. Te contactaremos para reprogramarlo.</p><p>{{ tenant.display_name }}</p>'),
    (null, 'trip_cancelled', 'EMAIL', 'en',
     'Your trip was cancelled',
     E'Hi {{ contact.first_name }},\n\nYour trip of {{ trip.departure_local }} was cancelled. We will contact you to rebook.\n\n{{ tenant.display_name }}',
     '<p>Hi {{ contact.first_name }},</p><p>Your trip of <strong>{{ trip.departure_local }}</strong> was cancelled. We will contact you to rebook.</p><p>{{ tenant.display_name }}</p>')
on conflict (tenant_id, trigger_event, channel, locale) do nothing;

insert into notification_templates (tenant_id, trigger_event, channel, locale, body)
values
    (null, 'trip_reminder', 'SMS', 'es', '{{ tenant.display_name }}: tu viaje sale el {{ trip.departure_local }}.'),
    (null, 'trip_reminder', 'SMS', 'en', '{{ tenant.display_name }}: your trip departs {{ trip.departure_local }}.'),
    (null, 'trip_reminder', 'WEBCHAT', 'es', 'Tu viaje sale el {{ trip.departure_local }}.'),
    (null, 'trip_reminder', 'WEBCHAT', 'en', 'Your trip departs {{ trip.departure_local }}.'),
    (null, 'trip_delayed', 'SMS', 'es', '{{ tenant.display_name }}: tu viaje está retrasado. Nueva salida: {{ trip.departure_local }}.'),
    (null, 'trip_delayed', 'SMS', 'en', '{{ tenant.display_name }}: your trip is delayed. New departure: {{ trip.departure_local }}.'),
    (null, 'trip_delayed', 'WEBCHAT', 'es', 'Tu viaje está retrasado. Nueva salida: {{ trip.departure_local }}.'),
    (null, 'trip_delayed', 'WEBCHAT', 'en', 'Your trip is delayed. New departure: {{ trip.departure_local }}.'),
    (null, 'trip_cancelled', 'SMS', 'es', '{{ tenant.display_name }}: tu viaje del {{ trip.departure_local }} fue cancelado.'),
    (null, 'trip_cancelled', 'SMS', 'en', '{{ tenant.display_name }}: your trip of {{ trip.departure_local }} was cancelled.'),
    (null, 'trip_cancelled', 'WEBCHAT', 'es', 'Tu viaje del {{ trip.departure_local }} fue cancelado.'),
    (null, 'trip_cancelled', 'WEBCHAT', 'en', 'Your trip of {{ trip.departure_local }} was cancelled.')
on conflict (tenant_id, trigger_event, channel, locale) do nothing;
