-- The inbox: inbound message content, and the badge for Hasura.

-- What arrived beyond the text: media metadata, location, interactive replies
-- (the provider's message object, minus nothing).
alter table messages add column content jsonb;

-- The global unread badge, as a Hasura-trackable function: the number of
-- conversations of the session's tenant with INBOUND messages newer than the
-- session user's read cursor. (`inbox_badge` is the return type; it holds no rows.)
create table inbox_badge (
    unread_conversations integer not null
);

create function inbox_badge(hasura_session json)
returns setof inbox_badge
language sql stable
as $$
    select count(*)::integer
      from conversations c
     where c.tenant_id = (hasura_session ->> 'x-hasura-tenant-id')::uuid
       and c.status <> 'RESOLVED'
       and conversation_unread_count(c, hasura_session) > 0
$$;
