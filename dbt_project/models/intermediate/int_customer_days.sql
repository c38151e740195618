{{
    config(
        materialized='incremental',
        unique_key=['customer_id', 'activity_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['customer_id', 'activity_date'], 'unique': True},
            {'columns': ['activity_date']},
            {'columns': ['_max_loaded_at']},
        ],
        post_hook="{{ customer_part_statistics(2) }}",
    )
}}
{#-
  One row per customer per day with any activity: orders, items, tickets, sessions. Incremental:
  a run recomputes only the days that received rows since the last run (late rows included). The unique
  index on (customer_id, activity_date) is its uniqueness check, enforced on every write.
  The staging views deduplicate by key with a window over every delivery; an incremental run reads
  them only for the keys of the touched days (`key = any(array(...))`, which PostgreSQL pushes below
  the window onto the raw tables' key indexes), so its cost follows the new data, not the history. The touched
  orders' lines are read per order by key (a lateral join): a join of two views filtered by arrays was planned on
  PostgreSQL's guess of a handful of keys, as a nested loop, quadratic in a day's orders (305 s at 1M customers).
-#}
{% if is_incremental() %}
{%- set since = "(select coalesce(max(_max_loaded_at), '-infinity'::timestamptz) from " ~ this ~ ")" -%}
with touched_days as (
    select (ordered_at at time zone 'UTC')::date as activity_date
    from {{ source('shop', 'orders') }} where _loaded_at > {{ since }}
    union
    select (o.ordered_at at time zone 'UTC')::date
    from {{ source('shop', 'orders') }} as o
    where o.order_id = any(array(select order_id from {{ source('shop', 'order_items') }} where _loaded_at > {{ since }}))
    union
    select (created_at at time zone 'UTC')::date
    from {{ source('shop', 'support_tickets') }} where _loaded_at > {{ since }}
    union
    select (started_at at time zone 'UTC')::date
    from {{ source('shop', 'web_sessions') }} where _loaded_at > {{ since }}
),

{%- set touched = 'select activity_date from touched_days' %}
orders as (
    select * from {{ ref('stg_shop__orders') }}
    where order_id = any(array({{ keys_on_days(source('shop', 'orders'), 'order_id', 'ordered_at', touched) }}))
),

tickets as (
    select * from {{ ref('stg_shop__support_tickets') }}
    where ticket_id = any(array({{ keys_on_days(source('shop', 'support_tickets'), 'ticket_id', 'created_at', touched) }}))
),

sessions as (
    select * from {{ ref('stg_shop__web_sessions') }}
    where session_id = any(array({{ keys_on_days(source('shop', 'web_sessions'), 'session_id', 'started_at', touched) }}))
),
{% else %}
with orders as (
    select * from {{ ref('stg_shop__orders') }}
),

tickets as (
    select * from {{ ref('stg_shop__support_tickets') }}
),

sessions as (
    select * from {{ ref('stg_shop__web_sessions') }}
),
{% endif %}

-- A deleted order or line (is_deleted) counts for nothing but still yields its (customer, day) row, with
-- zeros when nothing else happened that day: an incremental run replaces the row it counted in.
events as (
    select customer_id, order_date as activity_date, (not is_deleted)::integer as n_orders,
           case when is_deleted then 0 else amount end as amount, 0 as n_items, 0 as n_tickets,
           0 as n_sessions, 0 as pages, _loaded_at
    from orders
    union all
    select o.customer_id, o.order_date, 0, 0, case when i.is_deleted or o.is_deleted then 0 else i.quantity end,
           0, 0, 0, greatest(i._loaded_at, o._loaded_at)
    from orders as o
    {%- if is_incremental() %}
    {#- each order's lines read by its key: linear in the orders, whatever PostgreSQL estimates for them (fct_orders);
        `offset 0` keeps the subquery from being flattened into a join, which reads every line through the window #}
    cross join lateral (
        select * from {{ ref('stg_shop__order_items') }} as l where l.order_id = o.order_id offset 0
    ) as i
    {%- else %}
    inner join {{ ref('stg_shop__order_items') }} as i on i.order_id = o.order_id
    {%- endif %}
    union all
    select customer_id, created_date, 0, 0, 0, 1, 0, 0, _loaded_at
    from tickets
    union all
    select customer_id, session_date, 0, 0, 0, 0, 1, pages, _loaded_at
    from sessions
)

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
