-- Claim before send. A dispatch attempt moves its message QUEUED → SENDING,
-- with its own id and time, before it calls the provider; a later attempt that
-- finds the message SENDING does not call the provider again. A definite
-- failure releases the claim (back to QUEUED, or FAILED); an ambiguous
-- outcome (a crash, a timeout, an unreadable answer) keeps it until a
-- receipt, matched through our message id carried in the send, says what
-- happened.

alter table messages drop constraint messages_status_check;
alter table messages add constraint messages_status_check
    check (status in ('QUEUED', 'SENDING', 'SENT', 'DELIVERED', 'READ', 'FAILED'));

alter table messages
    add column send_attempt_id   uuid,
    add column send_claimed_at   timestamptz,
    -- Why the outcome of the claimed send is not known (kept while SENDING).
    add column send_unknown_reason text;

-- The forward order of delivery statuses; FAILED is terminal and reachable
-- only from QUEUED, SENDING or SENT.
create or replace function message_status_rank(status text) returns integer
language sql immutable
as $$
    select case status
        when 'QUEUED' then 0
        when 'SENDING' then 1
        when 'SENT' then 2
        when 'DELIVERED' then 3
        when 'READ' then 4
        when 'FAILED' then 5
    end
$$;

-- Receipts matched by our own id (a send whose answer was lost) look for
-- the message's id: it is the primary key. Claimed messages are what the
-- watchdog and the metrics look at.
create index messages_claimed_idx on messages (send_claimed_at) where status = 'SENDING';

-- An SES receipt names the configuration set it was published through; a
-- receipt kept before its message was known applies only to a message whose
-- account sends through that set.
alter table delivery_callbacks add column configuration_set text;
