-- An inbox that shows the whole story: notifications are part of the
-- thread, and unread counts follow the provider's time of each message.

-- The conversation a notification's message starts when the contact has no
-- live one on its account. Derived from the message's idempotency key (one
-- message per tenant, notification and chain step), not from its id: a
-- retried insert names the same conversation, even a fan-out round's retry
-- that brings a new message id, so a retry can never start a second one.
create function notification_conversation_id(p_tenant_id uuid, p_workflow_id text, p_attempt smallint)
returns uuid
language sql immutable
as $$
    select md5(p_tenant_id::text || '/' || p_workflow_id || '/' || p_attempt::text)::uuid
$$;

-- Every INBOUND message carries the provider's time of sending; rows from
-- before the inbound path kept it get their arrival.
update messages set sent_at = created_at where direction = 'INBOUND' and sent_at is null;

-- A read cursor is two watermarks over the INBOUND messages the agent saw:
-- `last_read_at`, the greatest provider time (`sent_at`), and
-- `last_read_created_at`, the greatest arrival here (`created_at`). NULL
-- (a cursor written without it) means the same as `last_read_at`.
alter table conversation_read_cursors add column last_read_created_at timestamptz;

-- The cursors so far were compared with `created_at`: that becomes their
-- arrival watermark, and their provider watermark is the newest provider
-- time among the messages they covered, so every count stays as it was.
update conversation_read_cursors r
   set last_read_created_at = r.last_read_at,
       last_read_at = coalesce(
           (select max(m.sent_at)
              from messages m
             where m.tenant_id = r.tenant_id
               and m.conversation_id = r.conversation_id
               and m.direction = 'INBOUND'
               and m.created_at <= r.last_read_at),
           r.last_read_at);

-- Hasura computed field on conversations: the INBOUND messages the session
-- user has not seen (all of them without a cursor). A message is unread when
-- it is newer than the cursor on either clock: sent after the newest one the
-- agent read (`sent_at`), or arrived after everything the agent saw
-- (`created_at`) — a delivery that comes late with an older provider time,
-- or a second message within the same provider second (Meta's timestamps are
-- whole seconds), was never on the agent's screen.
create or replace function conversation_unread_count(conversation conversations, hasura_session json)
returns integer
language sql stable
as $$
    select count(*)::integer
      from messages m
      left join conversation_read_cursors r
        on r.tenant_id = conversation.tenant_id
       and r.conversation_id = conversation.id
       and r.agent_id = hasura_session ->> 'x-hasura-user-id'
     where m.tenant_id = conversation.tenant_id
       and m.conversation_id = conversation.id
       and m.direction = 'INBOUND'
       and (r.agent_id is null
            or coalesce(m.sent_at, m.created_at) > r.last_read_at
            or m.created_at > coalesce(r.last_read_created_at, r.last_read_at))
$$;
