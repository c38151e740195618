{#- One row per calendar day from the first to the last order: revenue, orders, buyers, new and active customers.
    A customer is active on a day when they ordered within the active_customer_days before it (that day included).
    Active spells are merged per customer (an order inside a spell extends it), so each day counts a customer once
    without a join of days against orders. -#}
{% set window = var('active_customer_days') %}
with orders as (
    select customer_id, order_date, amount from {{ ref('fct_orders') }} where not is_deleted
),

days as (
    select generate_series(min(order_date), max(order_date), interval '1 day')::date as day from orders
),

sales as (
    select order_date as day, sum(amount) as revenue, count(*) as orders, count(distinct customer_id) as buyers
    from orders
    group by order_date
),

first_orders as (
    select first_day as day, count(*) as new_customers
    from (select customer_id, min(order_date) as first_day from orders group by customer_id) f
    group by first_day
),

customer_days as (
    select distinct customer_id, order_date from orders
),

spell_marks as (
    select customer_id, order_date,
           case when lag(order_date) over (partition by customer_id order by order_date) >= order_date - {{ window }}
                then 0 else 1 end as starts_spell
    from customer_days
),

spell_ids as (
    select customer_id, order_date,
           sum(starts_spell) over (partition by customer_id order by order_date) as spell
    from spell_marks
),

spells as (
    select customer_id, min(order_date) as first_day, max(order_date) + {{ window }} as end_day
    from spell_ids
    group by customer_id, spell
),

active_changes as (
    select day, sum(change) as change
    from (
        select first_day as day, 1 as change from spells
        union all
        select end_day as day, -1 as change from spells
    ) c
    group by day
)

select
    d.day,
    coalesce(s.revenue, 0)::numeric(14, 2) as revenue,
    coalesce(s.orders, 0)::bigint as orders,
    coalesce(s.buyers, 0)::bigint as buyers,
    coalesce(f.new_customers, 0)::bigint as new_customers,
    (sum(coalesce(a.change, 0)) over (order by d.day))::bigint as active_customers
from days d
left join sales s on s.day = d.day
left join first_orders f on f.day = d.day
left join active_changes a on a.day = d.day
