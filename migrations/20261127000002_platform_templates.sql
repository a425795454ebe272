-- Platform default templates: what a tenant without its own template sends.
-- Tenants override them with rows of their own (same trigger, channel, locale).
insert into notification_templates (tenant_id, trigger_event, channel, locale, subject, body, body_html)
values
    (null, 'booking_confirmed', 'EMAIL', 'es',
     'Tu reserva {{ booking.booking_reference }} está confirmada',
     E'Hola {{ contact.first_name }},\n\nTu reserva {{ booking.booking_reference }} está confirmada.{% if booking.seat is defined and booking.seat %} Asiento: {{ booking.seat }}.{% endif %}\n\n¡Buen viaje!\n{{ tenant.display_name }}',
     '<p>Hola {{ contact.first_name }},</p><p>Tu reserva <strong>{{ booking.booking_reference }}</strong> está confirmada.{% if booking.seat is defined and booking.seat %} Asiento: {{ booking.seat }}.{% endif %}</p><p>¡Buen viaje!<br>{{ tenant.display_name }}</p>'),
    (null, 'booking_confirmed', 'EMAIL', 'en',
     'Your booking {{ booking.booking_reference }} is confirmed',
     E'Hi {{ contact.first_name }},\n\nYour booking {{ booking.booking_reference }} is confirmed.{% if booking.seat is defined and booking.seat %} Seat: {{ booking.seat }}.{% endif %}\n\nHave a good trip!\n{{ tenant.display_name }}',
     '<p>Hi {{ contact.first_name }},</p><p>Your booking <strong>{{ booking.booking_reference }}</strong> is confirmed.{% if booking.seat is defined and booking.seat %} Seat: {{ booking.seat }}.{% endif %}</p><p>Have a good trip!<br>{{ tenant.display_name }}</p>')
on conflict (tenant_id, trigger_event, channel, locale) do nothing;

-- SMS and webchat: short, plain text.
insert into notification_templates (tenant_id, trigger_event, channel, locale, body)
values
    (null, 'booking_confirmed', 'SMS', 'es',
     '{{ tenant.display_name }}: tu reserva {{ booking.booking_reference }} está confirmada.'),
    (null, 'booking_confirmed', 'SMS', 'en',
     '{{ tenant.display_name }}: your booking {{ booking.booking_reference }} is confirmed.'),
    (null, 'booking_confirmed', 'WEBCHAT', 'es',
     'Tu reserva {{ booking.booking_reference }} está confirmada.'),
    (null, 'booking_confirmed', 'WEBCHAT', 'en',
     'Your booking {{ booking.booking_reference }} is confirmed.')
on conflict (tenant_id, trigger_event, channel, locale) do nothing;
