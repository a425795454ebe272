-- A fan-out round books the rate-limit slots of many sends in one call.
-- Every send of an account draws from the account's bucket, so booking
-- them one statement each queued every sender on that one row lock, once
-- per message; booked together they take it once per group.
--
-- `rate_limit_reserve_many` books the sends in order. Rows (p_send[r],
-- p_bucket[r], …) name each send's buckets: send i waits for the slowest of
-- its buckets, then books that moment in each of them. A send whose wait is
-- above p_max_wait books nothing, and its entry is the wait, negated. With
-- one send it books as `rate_limit_reserve`, which `rate_limit_take` still
-- uses. Buckets are locked in key order, as there.
create function rate_limit_reserve_many(
    p_tenant uuid,
    p_send integer[],
    p_bucket text[],
    p_per_second double precision[],
    p_burst integer[],
    p_cost integer[],
    p_max_wait double precision
) returns double precision[]
language plpgsql as $$
declare
    n_rows integer := coalesce(array_length(p_bucket, 1), 0);
    n_sends integer := coalesce((select max(s) from unnest(p_send) as s), 0);
    keys text[];
    tats timestamptz[];
    current_tat timestamptz;
    k integer;
    i integer;
    r integer;
    now_ts timestamptz;
    emission interval;
    cost integer;
    wait double precision;
    allow_at timestamptz;
    waits double precision[] := '{}';
begin
    select array_agg(b order by b) into keys
      from (select distinct unnest(p_bucket) as b) as distinct_buckets;
    if keys is null then
        return array_fill(0::double precision, array[n_sends]);
    end if;
    tats := array_fill('-infinity'::timestamptz, array[array_length(keys, 1)]);
    for k in 1..array_length(keys, 1) loop
        insert into rate_limit_buckets (tenant_id, bucket, tat)
        values (p_tenant, keys[k], '-infinity')
        on conflict (tenant_id, bucket) do nothing;
        select b.tat into strict current_tat from rate_limit_buckets b
         where b.tenant_id = p_tenant and b.bucket = keys[k]
         for update;
        tats[k] := current_tat;
    end loop;
    now_ts := clock_timestamp();
    for i in 1..n_sends loop
        wait := 0;
        for r in 1..n_rows loop
            continue when p_send[r] <> i;
            k := array_position(keys, p_bucket[r]);
            emission := make_interval(secs => 1.0 / p_per_second[r]);
            cost := least(greatest(p_cost[r], 1), p_burst[r]);
            allow_at := greatest(tats[k], now_ts) + emission * cost - emission * p_burst[r];
            if allow_at > now_ts then
                wait := greatest(wait, extract(epoch from allow_at - now_ts));
            end if;
        end loop;
        if wait > p_max_wait then
            waits := waits || -wait;
            continue;
        end if;
        for r in 1..n_rows loop
            continue when p_send[r] <> i;
            k := array_position(keys, p_bucket[r]);
            emission := make_interval(secs => 1.0 / p_per_second[r]);
            cost := least(greatest(p_cost[r], 1), p_burst[r]);
            tats[k] := greatest(tats[k], now_ts + make_interval(secs => wait)) + emission * cost;
        end loop;
        waits := waits || wait;
    end loop;
    for k in 1..array_length(keys, 1) loop
        update rate_limit_buckets set tat = tats[k]
         where tenant_id = p_tenant and bucket = keys[k] and tat is distinct from tats[k];
    end loop;
    return waits;
end
$$;
