{#- Monthly retention cohorts: customers grouped by the month of their first order; for each later month, how many
    of them ordered in it. Month 0 is the cohort month itself (retention 1.0). -#}
with orders as (
    select customer_id, order_date from {{ ref('fct_orders') }} where not is_deleted
),

firsts as (
    select customer_id, date_trunc('month', min(order_date))::date as cohort_month
    from orders
    group by customer_id
),

cohort_sizes as (
    select cohort_month, count(*) as cohort_customers from firsts group by cohort_month
),

activity as (
    select distinct o.customer_id, f.cohort_month, date_trunc('month', o.order_date)::date as order_month
    from orders o
    join firsts f using (customer_id)
)

select
    a.cohort_month,
    ((extract(year from a.order_month) - extract(year from a.cohort_month)) * 12
     + extract(month from a.order_month) - extract(month from a.cohort_month))::integer as months_since_first_order,
    c.cohort_customers::bigint as cohort_customers,
    count(*)::bigint as ordering_customers,
    round(count(*)::numeric / c.cohort_customers, 4)::numeric(6, 4) as retention_rate
from activity a
join cohort_sizes c using (cohort_month)
group by a.cohort_month, a.order_month, c.cohort_customers
