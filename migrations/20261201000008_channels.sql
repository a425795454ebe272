-- The channels a message can travel on, as a table the channel columns
-- reference, instead of a CHECK list repeated on four tables: adding a
-- channel is its adapter (activities/src/providers/<channel>/) and one row
-- here. `tests/e2e/schema.rs` keeps the rows and the adapters in step.

create table channels (
    name text primary key
);

insert into channels (name) values ('WHATSAPP'), ('EMAIL'), ('SMS'), ('WEBCHAT');

alter table channel_accounts drop constraint channel_accounts_channel_check,
    add constraint channel_accounts_channel_fkey foreign key (channel) references channels (name);
alter table messages drop constraint messages_channel_check,
    add constraint messages_channel_fkey foreign key (channel) references channels (name);
alter table notification_templates drop constraint notification_templates_channel_check,
    add constraint notification_templates_channel_fkey foreign key (channel) references channels (name);
alter table delivery_callbacks drop constraint delivery_callbacks_channel_check,
    add constraint delivery_callbacks_channel_fkey foreign key (channel) references channels (name);
