with source as (
    {{ latest_delivery(source('shop', 'support_tickets'), ['ticket_id']) }}
)

select
    ticket_id,
    customer_id,
    created_at,
    (created_at at time zone 'UTC')::date as created_date,
    lower(nullif(trim(topic), '')) as topic,
    satisfaction,
    _loaded_at
from source
