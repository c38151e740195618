{{ config(indexes=[{'columns': ['customer_id', 'valid_from'], 'unique': True}]) }}
{#-
  Every version of every customer's attributes, enriched as it was known at the time (point in time).
  Versions: each row of the customers snapshot (valid from its delivery day until a later delivery
  changes it) and, for a customer who ordered before their first customers delivery (or who is in no
  delivery: an orders-only feed), a version with nothing delivered, valid from the first order on.

  Missing attributes are imputed from what had been delivered before the month in which the version
  starts (each customer's version current on that month's first day), so an imputed value never uses a
  later delivery and never changes once set. Each rule is flagged by an is_imputed_* column:
    region          country -> region via the country_regions seed; a missing or unmapped country gets
                    the most common known region.
    birth_year      the median known birth year of customers with the same acquisition channel; else the
                    median of all known birth years; else var('fallback_birth_year').
    acquisition_channel  the most common known channel; else 'unknown'.
  _loaded_at (delivered versions) tells customer_features which as-of dates a late delivery reaches.
-#}
with regions as (
    select * from {{ ref('country_regions') }}
),

delivered as (
    select
        s.customer_id,
        s.signup_date,
        s.country,
        r.region,
        s.birth_year,
        s.acquisition_channel,
        s.dbt_valid_from::date as valid_from,
        s.dbt_valid_to::date as valid_to,
        s._loaded_at
    from {{ ref('customers_snapshot') }} as s
    left join regions as r on r.country = s.country
),

first_orders as (
    select customer_id, min(order_date) as first_order_date
    from {{ ref('stg_shop__orders') }}
    group by customer_id
),

first_deliveries as (
    select customer_id, min(valid_from) as first_delivered
    from delivered
    group by customer_id
),

before_delivery as (
    select
        o.customer_id,
        o.first_order_date as signup_date,
        null::text as country,
        null::text as region,
        null::integer as birth_year,
        null::text as acquisition_channel,
        o.first_order_date as valid_from,
        d.first_delivered as valid_to,
        null::timestamptz as _loaded_at
    from first_orders as o
    left join first_deliveries as d on d.customer_id = o.customer_id
    where d.first_delivered is null or o.first_order_date < d.first_delivered
),

versions as (
    select *, true as in_customers_feed from delivered
    union all
    select *, false as in_customers_feed from before_delivery
),

months as (
    select distinct date_trunc('month', valid_from)::date as month_start from versions
),

known as (
    -- per month: each customer's delivered version current on its first day
    select m.month_start, d.region, d.birth_year, d.acquisition_channel
    from months as m
    inner join delivered as d
        on d.valid_from < m.month_start
        and (d.valid_to is null or d.valid_to >= m.month_start)
),

region_mode as (
    select month_start, mode() within group (order by region) as region
    from known
    where region is not null
    group by month_start
),

birth_year_by_channel as (
    select month_start, acquisition_channel, percentile_disc(0.5) within group (order by birth_year) as birth_year
    from known
    where birth_year is not null and acquisition_channel is not null
    group by month_start, acquisition_channel
),

birth_year_overall as (
    select month_start, percentile_disc(0.5) within group (order by birth_year) as birth_year
    from known
    where birth_year is not null
    group by month_start
),

channel_mode as (
    select month_start, mode() within group (order by acquisition_channel) as channel
    from known
    where acquisition_channel is not null
    group by month_start
)

select
    v.customer_id,
    v.valid_from,
    v.valid_to,
    v.valid_to is null as is_current,
    v.signup_date,
    o.first_order_date,
    v.country,
    coalesce(v.region, rm.region, 'unknown') as region,
    coalesce(v.birth_year, bc.birth_year, bo.birth_year, {{ var('fallback_birth_year') }})::integer as birth_year,
    coalesce(v.acquisition_channel, cm.channel, 'unknown') as acquisition_channel,
    v.region is null as is_imputed_region,
    v.birth_year is null as is_imputed_birth_year,
    v.acquisition_channel is null as is_imputed_channel,
    v.in_customers_feed,
    v._loaded_at
from versions as v
left join first_orders as o on o.customer_id = v.customer_id
left join region_mode as rm on rm.month_start = date_trunc('month', v.valid_from)
left join birth_year_by_channel as bc
    on bc.month_start = date_trunc('month', v.valid_from) and bc.acquisition_channel = v.acquisition_channel
left join birth_year_overall as bo on bo.month_start = date_trunc('month', v.valid_from)
left join channel_mode as cm on cm.month_start = date_trunc('month', v.valid_from)
