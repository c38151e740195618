with source as (
    select * from {{ source('shop', 'orders') }}
),

latest as (
    select
        *,
        row_number() over (partition by order_id order by _loaded_at desc, _file_sha256 desc, _line_no desc) as delivery_rank
    from source
)

select
    order_id,
    customer_id,
    ordered_at,
    (ordered_at at time zone 'UTC')::date as order_date,
    amount::numeric(12, 2) as amount
from latest
where delivery_rank = 1
