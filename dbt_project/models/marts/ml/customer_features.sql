{%- set horizon = var('label_horizon_days') -%}

with orders as (
    select * from {{ ref('stg_shop__orders') }}
),

customers as (
    select * from {{ ref('stg_shop__customers') }}
),

observed as (
    select min(order_date) as first_day, max(order_date) as last_day from orders
),

as_of_dates as (
    select generate_series(
        (first_day + {{ var('feature_warmup_days') }})::timestamp,
        last_day::timestamp,
        interval '{{ var('feature_cadence_days') }} days'
    )::date as as_of_date
    from observed
),

history as (
    select
        d.as_of_date,
        o.customer_id,
        min(o.order_date) as first_order_date,
        max(o.order_date) as last_order_date,
        count(*) as orders_total,
        count(*) filter (where o.order_date >= d.as_of_date - 30) as orders_30d,
        count(*) filter (where o.order_date >= d.as_of_date - 90) as orders_90d,
        sum(o.amount) as amount_total,
        coalesce(sum(o.amount) filter (where o.order_date >= d.as_of_date - 90), 0) as amount_90d
    from as_of_dates as d
    inner join orders as o on o.order_date < d.as_of_date
    group by d.as_of_date, o.customer_id
),

future as (
    select
        d.as_of_date,
        o.customer_id,
        count(*) as orders_next,
        sum(o.amount) as amount_next
    from as_of_dates as d
    inner join orders as o
        on o.order_date >= d.as_of_date and o.order_date < d.as_of_date + {{ horizon }}
    group by d.as_of_date, o.customer_id
),

active as (
    select * from history
    where last_order_date >= as_of_date - {{ var('active_window_days') }}
)

select
    a.customer_id,
    a.as_of_date,
    a.as_of_date - a.first_order_date as tenure_days,
    a.as_of_date - a.last_order_date as recency_days,
    a.orders_30d,
    a.orders_90d,
    a.orders_total,
    a.amount_90d,
    a.amount_total,
    round(a.amount_total / a.orders_total, 2) as avg_order_value,
    c.acquisition_channel,
    a.as_of_date + {{ horizon }} <= observed.last_day as label_matured,
    case when a.as_of_date + {{ horizon }} <= observed.last_day
        then case when coalesce(f.orders_next, 0) = 0 then 1 else 0 end
    end as churned_90d,
    case when a.as_of_date + {{ horizon }} <= observed.last_day
        then coalesce(f.amount_next, 0)
    end as revenue_next_90d
from active as a
cross join observed
left join future as f on f.customer_id = a.customer_id and f.as_of_date = a.as_of_date
left join customers as c on c.customer_id = a.customer_id
