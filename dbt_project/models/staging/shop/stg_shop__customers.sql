with source as (
    {{ latest_delivery(source('shop', 'customers'), ['customer_id']) }}
)

select
    customer_id,
    signup_date,
    upper(nullif(trim(country), '')) as country,
    birth_year,
    lower(nullif(trim(acquisition_channel), '')) as acquisition_channel,
    coalesce(_delivery_date, (_loaded_at at time zone 'UTC')::date)::timestamp as delivered_at,
    _loaded_at
from source
