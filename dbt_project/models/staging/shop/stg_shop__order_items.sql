with source as (
    {{ latest_delivery(source('shop', 'order_items'), ['order_id', 'line_no']) }}
)

select
    order_id,
    line_no,
    product_id,
    quantity,
    unit_price::numeric(12, 2) as unit_price,
    (quantity * unit_price)::numeric(12, 2) as line_amount,
    deleted_at is not null as is_deleted,
    _loaded_at
from source
