-- Webchat talks back: the widget reads its visitor's messages in order.
--
-- Each visitor's messages (theirs, and what we sent them once SENT) get a
-- sequence number of that visitor's own: the widget's cursor. The number is
-- taken from the visitor's row under its row lock, so within one visitor
-- numbers commit in the order they are taken: a reader that has seen n has
-- seen everything before n, and a long poll never skips a message that
-- commits late. Each number is announced on the `busflow_webchat` channel
-- (`{tenant}:{visitor}`) when its transaction commits, which wakes the API
-- replica holding that visitor's long poll.

create table webchat_visitors (
    tenant_id   uuid not null,
    visitor_id  text not null,
    -- Set once the visitor has a contact (their first message, or later).
    contact_id  uuid,
    last_seq    bigint not null default 0,
    created_at  timestamptz not null default now(),
    primary key (tenant_id, visitor_id),
    foreign key (tenant_id, contact_id) references contacts (tenant_id, id)
);
create index webchat_visitors_contact_idx on webchat_visitors (tenant_id, contact_id)
    where contact_id is not null;

insert into webchat_visitors (tenant_id, visitor_id, contact_id)
select tenant_id, identifiers ->> 'webchat', id
  from contacts
 where identifiers ? 'webchat'
on conflict do nothing;

alter table messages add column webchat_seq bigint;
create index messages_webchat_thread_idx on messages (tenant_id, contact_id, webchat_seq)
    where webchat_seq is not null;

create function webchat_number_message() returns trigger
language plpgsql as $$
declare
    v_visitor text;
begin
    if not (new.direction = 'INBOUND' or new.status in ('SENT', 'DELIVERED', 'READ')) then
        return new;
    end if;
    select c.identifiers ->> 'webchat' into v_visitor
      from contacts c
     where c.tenant_id = new.tenant_id and c.id = new.contact_id;
    if v_visitor is null then
        return new;
    end if;
    insert into webchat_visitors as v (tenant_id, visitor_id, contact_id, last_seq)
    values (new.tenant_id, v_visitor, new.contact_id, 1)
    on conflict (tenant_id, visitor_id)
    do update set last_seq = v.last_seq + 1, contact_id = coalesce(v.contact_id, excluded.contact_id)
    returning v.last_seq into new.webchat_seq;
    perform pg_notify('busflow_webchat', new.tenant_id::text || ':' || v_visitor);
    return new;
end
$$;

create trigger messages_webchat_number
    before insert or update of status on messages
    for each row
    when (new.channel = 'WEBCHAT' and new.webchat_seq is null)
    execute function webchat_number_message();

-- Number what is already visible, oldest first.
with numbered as (
    select m.id, m.tenant_id, c.identifiers ->> 'webchat' as visitor,
           row_number() over (partition by m.tenant_id, m.contact_id order by m.created_at, m.id) as seq
      from messages m
      join contacts c on c.tenant_id = m.tenant_id and c.id = m.contact_id
     where m.channel = 'WEBCHAT' and c.identifiers ? 'webchat'
       and (m.direction = 'INBOUND' or m.status in ('SENT', 'DELIVERED', 'READ')))
update messages m set webchat_seq = n.seq from numbered n where m.id = n.id;
update webchat_visitors v
   set last_seq = coalesce((select max(m.webchat_seq) from messages m
                             where m.tenant_id = v.tenant_id and m.contact_id = v.contact_id
                               and m.channel = 'WEBCHAT'), 0);
