with source as (
    {{ latest_delivery(source('shop', 'orders'), ['order_id']) }}
)

select
    order_id,
    customer_id,
    ordered_at,
    (ordered_at at time zone 'UTC')::date as order_date,
    amount::numeric(12, 2) as amount,
    lower(nullif(trim(channel), '')) as channel,
    deleted_at is not null as is_deleted,
    _loaded_at
from source
