{{
    config(
        materialized='incremental',
        unique_key=['customer_id', 'activity_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}
{#-
  One row per customer per day with any activity: orders, items, tickets, sessions. Incremental:
  a run recomputes only the days that received rows since the last run (late rows included).
-#}
with orders as (
    select * from {{ ref('stg_shop__orders') }}
),

items as (
    select * from {{ ref('stg_shop__order_items') }}
),

tickets as (
    select * from {{ ref('stg_shop__support_tickets') }}
),

sessions as (
    select * from {{ ref('stg_shop__web_sessions') }}
),

events as (
    select customer_id, order_date as activity_date, 1 as n_orders, amount, 0 as n_items, 0 as n_tickets,
           0 as n_sessions, 0 as pages, _loaded_at
    from orders
    union all
    select o.customer_id, o.order_date, 0, 0, i.quantity, 0, 0, 0, greatest(i._loaded_at, o._loaded_at)
    from items as i
    inner join orders as o on o.order_id = i.order_id
    union all
    select customer_id, created_date, 0, 0, 0, 1, 0, 0, _loaded_at
    from tickets
    union all
    select customer_id, session_date, 0, 0, 0, 0, 1, pages, _loaded_at
    from sessions
)

{% if is_incremental() %}
, touched_days as (
    select distinct activity_date
    from events
    where _loaded_at > (select coalesce(max(_max_loaded_at), '-infinity') from {{ this }})
)
{% endif %}

select
    customer_id,
    activity_date,
    sum(n_orders)::integer as n_orders,
    sum(amount)::numeric(14, 2) as amount,
    sum(n_items)::integer as n_items,
    sum(n_tickets)::integer as n_tickets,
    sum(n_sessions)::integer as n_sessions,
    sum(pages)::integer as pages,
    max(_loaded_at) as _max_loaded_at
from events
{% if is_incremental() %}
where activity_date in (select activity_date from touched_days)
{% endif %}
group by customer_id, activity_date
