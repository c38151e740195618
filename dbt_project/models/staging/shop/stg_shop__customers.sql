with source as (
    select * from {{ source('shop', 'customers') }}
),

latest as (
    select
        *,
        row_number() over (partition by customer_id order by _loaded_at desc, _file_sha256 desc, _line_no desc) as delivery_rank
    from source
)

select
    customer_id,
    signup_date,
    upper(nullif(trim(country), '')) as country,
    birth_year,
    lower(nullif(trim(acquisition_channel), '')) as acquisition_channel
from latest
where delivery_rank = 1
