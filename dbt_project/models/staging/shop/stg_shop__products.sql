with source as (
    {{ latest_delivery(source('shop', 'products'), ['product_id']) }}
)

select
    product_id,
    lower(nullif(trim(category), '')) as category,
    unit_price::numeric(12, 2) as unit_price,
    _loaded_at
from source
