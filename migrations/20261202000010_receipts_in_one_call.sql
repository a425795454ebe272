-- A delivery receipt is recorded in one round trip: lock the provider id,
-- find (or, by our own id echoed back, adopt) its message, keep the callback,
-- and move the status forward. The same steps were six statements from the
-- API, and at hundreds of receipts a second the round trips were the cost.

-- Moves a message to p_status if that is forward. Returns the status
-- afterwards and whether it changed. A DELIVERED after READ keeps the
-- earlier delivery time (READ stood in for it).
create function apply_message_status(
    p_tenant uuid, p_id uuid, p_status text, p_at timestamptz, p_reason text)
returns table (after_status text, changed boolean)
language plpgsql as $$
declare
    v_status text;
begin
    update messages
       set status = p_status,
           sent_at = case when p_status in ('SENT', 'DELIVERED', 'READ') then coalesce(sent_at, p_at) else sent_at end,
           delivered_at = case when p_status in ('DELIVERED', 'READ') then coalesce(delivered_at, p_at) else delivered_at end,
           read_at = case when p_status = 'READ' then coalesce(read_at, p_at) else read_at end,
           failed_at = case when p_status = 'FAILED' then p_at else failed_at end,
           failed_reason = case when p_status = 'FAILED' then coalesce(p_reason, 'the provider reported a failure')
                                else failed_reason end,
           updated_at = now()
     where tenant_id = p_tenant and id = p_id
       and status <> 'FAILED'
       and message_status_rank(status) < message_status_rank(p_status)
       and (p_status <> 'FAILED' or status in ('QUEUED', 'SENDING', 'SENT'))
    returning status into v_status;
    if found then
        return query select v_status, true;
        return;
    end if;
    if p_status = 'DELIVERED' then
        update messages set delivered_at = least(delivered_at, p_at), updated_at = now()
         where tenant_id = p_tenant and id = p_id and status = 'READ';
    end if;
    select status into v_status from messages where tenant_id = p_tenant and id = p_id;
    return query select v_status, false;
end
$$;

-- Records one provider callback. `settles`: this callback ended the
-- message's wait for a receipt (it was not DELIVERED, READ or FAILED
-- before, and is now), the one receipt its workflow needs to hear of.
-- No row back: no message has that provider
-- id (yet); the callback is kept and applied when one records it.
-- An account-level receipt (p_tenant null) changes an email only when the
-- message's account publishes through p_configuration_set.
create function record_delivery_callback(
    p_tenant uuid,
    p_channel text,
    p_external text,
    p_status text,
    p_reason text,
    p_occurred_at timestamptz,
    p_detail jsonb,
    p_correlation uuid,
    p_configuration_set text)
returns table (matched_id uuid, matched_tenant uuid, signal_workflow_id text,
               after_status text, changed boolean, settles boolean)
language plpgsql as $$
declare
    v_id uuid;
    v_tenant uuid;
    v_workflow text;
    v_before text;
begin
    perform pg_advisory_xact_lock(hashtext('busflow.messages.external_message_id'), hashtext(p_external));
    select m.id, m.tenant_id, case when m.batch_workflow_id is null then m.workflow_id end, m.status
      into v_id, v_tenant, v_workflow, v_before
      from messages m
     where m.channel = p_channel and m.external_message_id = p_external
       and (p_tenant is null or m.tenant_id = p_tenant)
       and (p_tenant is not null or m.channel <> 'EMAIL'
            or coalesce((select ca.provider_config->>'configuration_set' from channel_accounts ca
                          where ca.tenant_id = m.tenant_id and ca.id = m.channel_account_id), '')
               = coalesce(p_configuration_set, ''))
     limit 1
     for update;
    if v_id is null and p_correlation is not null then
        update messages m set external_message_id = p_external, updated_at = now()
         where m.id = p_correlation and m.channel = p_channel and m.direction = 'OUTBOUND'
           and m.external_message_id is null
           and (p_tenant is null or m.tenant_id = p_tenant)
           and (p_tenant is not null or m.channel <> 'EMAIL'
                or coalesce((select ca.provider_config->>'configuration_set' from channel_accounts ca
                              where ca.tenant_id = m.tenant_id and ca.id = m.channel_account_id), '')
                   = coalesce(p_configuration_set, ''))
        returning m.id, m.tenant_id, case when m.batch_workflow_id is null then m.workflow_id end, m.status
             into v_id, v_tenant, v_workflow, v_before;
    end if;
    insert into delivery_callbacks
        (tenant_id, channel, external_message_id, status, reason, occurred_at, detail, message_id,
         applied_at, configuration_set)
    values (coalesce(v_tenant, p_tenant), p_channel, p_external, p_status, p_reason, p_occurred_at,
            p_detail, v_id, case when v_id is null then null else now() end, p_configuration_set);
    if v_id is null then
        return;
    end if;
    return query
    select v_id, v_tenant, v_workflow, s.after_status, s.changed,
           s.changed and v_before in ('QUEUED', 'SENDING', 'SENT')
                     and s.after_status in ('DELIVERED', 'READ', 'FAILED')
      from apply_message_status(v_tenant, v_id, p_status, p_occurred_at, p_reason) s;
end
$$;

-- Quiet hours as a function, so that planning reads them with everything
-- else it needs: when the send window opens for this contact, or NULL when it
-- is open now (or the tenant has no quiet hours). Local time is the
-- contact's zone when it is a known one, else the tenant's.
create function send_window_opens(p_tenant uuid, p_contact uuid)
returns timestamptz
language sql stable as $$
    with settings as (
         select t.quiet_hours_start as qs, t.quiet_hours_end as qe,
                case
                    when c.time_zone is not null
                     and exists (select 1 from pg_timezone_names where name = c.time_zone)
                    then c.time_zone
                    else t.time_zone
                end as tz
           from tenant_settings t
           left join contacts c on c.tenant_id = t.tenant_id and c.id = p_contact
          where t.tenant_id = p_tenant
            and t.quiet_hours_start is not null and t.quiet_hours_end is not null
            and t.quiet_hours_start <> t.quiet_hours_end),
     local as (select qs, qe, tz, (now() at time zone tz) as at from settings)
     select case
                when (qs < qe and at::time >= qs and at::time < qe)
                  or (qs > qe and (at::time >= qs or at::time < qe))
                then ((at::date + case when at::time < qe then 0 else 1 end) + qe) at time zone tz
            end
       from local
$$;
