{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='merge',
        on_schema_change='fail',
    )
}}
{#- One row per order. Incremental: merges orders loaded (or whose lines were loaded) since the last run. -#}
with orders as (
    select * from {{ ref('stg_shop__orders') }}
),

items as (
    select * from {{ ref('stg_shop__order_items') }}
),

lines as (
    select order_id, count(*)::integer as n_lines, sum(quantity)::integer as n_items, max(_loaded_at) as _loaded_at
    from items
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.ordered_at,
    o.order_date,
    o.amount,
    o.channel,
    coalesce(l.n_lines, 0) as n_lines,
    coalesce(l.n_items, 0) as n_items,
    greatest(o._loaded_at, l._loaded_at) as _loaded_at
from orders as o
left join lines as l on l.order_id = o.order_id
{% if is_incremental() %}
where greatest(o._loaded_at, l._loaded_at) > (select coalesce(max(_loaded_at), '-infinity') from {{ this }})
{% endif %}
