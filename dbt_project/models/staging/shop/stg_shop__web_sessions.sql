with source as (
    {{ latest_delivery(source('shop', 'web_sessions'), ['session_id']) }}
)

select
    session_id,
    customer_id,
    started_at,
    (started_at at time zone 'UTC')::date as session_date,
    coalesce(pages, 1) as pages,
    lower(nullif(trim(device), '')) as device,
    _loaded_at
from source
