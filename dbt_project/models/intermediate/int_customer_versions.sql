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
{#- PostgreSQL's JIT compiles this many-CTE query for longer than it runs (10x history: 6.4 s with, 3.1 s
    without); `set local` holds for this model's transaction only. -#}
{{
    config(
        indexes=[{'columns': ['customer_id', 'valid_from'], 'unique': True}],
        pre_hook="set local jit = off",
        post_hook="{{ customer_part_statistics(2) }}",
    )
}}
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
    select customer_id, min(activity_date) as first_order_date
    from {{ ref('int_customer_days') }}
    where n_orders > 0
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

changes as (
    -- A delivered version counts from the first month start after its delivery until the first month
    -- start after it is replaced: +1 and -1 per combination of attribute values (a missing value as
    -- '?' or 0, so combinations join by equality), then running totals per month.
    select k.month_start, k.region, k.birth_year, k.acquisition_channel, sum(c.delta) as delta
    from (
        select valid_from as changed_on, 1 as delta, * from delivered
        union all
        select valid_to, -1, * from delivered where valid_to is not null
    ) as c
    cross join lateral (
        select
            (date_trunc('month', c.changed_on) + interval '1 month')::date as month_start,
            coalesce(c.region, '?') as region,
            coalesce(c.birth_year, 0) as birth_year,
            coalesce(c.acquisition_channel, '?') as acquisition_channel
    ) as k
    group by 1, 2, 3, 4
),

months as (
    select date_trunc('month', valid_from)::date as month_start from versions
    union
    select month_start from changes
),

combinations as (
    select distinct region, birth_year, acquisition_channel from changes
),

known as (
    -- per month start and combination of attribute values: how many customers' current versions had them
    select
        m.month_start, c.region, c.birth_year, c.acquisition_channel,
        sum(coalesce(d.delta, 0)) over (
            partition by c.region, c.birth_year, c.acquisition_channel order by m.month_start
        ) as customers
    from months as m
    cross join combinations as c
    left join changes as d
        on d.month_start = m.month_start
        and d.region = c.region
        and d.birth_year = c.birth_year
        and d.acquisition_channel = c.acquisition_channel
),

region_mode as (
    select distinct on (month_start) month_start, region
    from (select month_start, region, sum(customers) as n from known where region <> '?' group by 1, 2) as r
    where n > 0
    order by month_start, n desc, region
),

channel_mode as (
    select distinct on (month_start) month_start, acquisition_channel as channel
    from (
        select month_start, acquisition_channel, sum(customers) as n
        from known where acquisition_channel <> '?' group by 1, 2
    ) as c
    where n > 0
    order by month_start, n desc, acquisition_channel
),

birth_years as (
    -- known birth years per month, by channel ('*' = all channels), with running and total counts
    select
        month_start, channel, birth_year,
        sum(n) over (partition by month_start, channel order by birth_year) as running,
        sum(n) over (partition by month_start, channel) as total
    from (
        select month_start, acquisition_channel as channel, birth_year, sum(customers) as n
        from known where birth_year <> 0 and acquisition_channel <> '?' group by 1, 2, 3
        union all
        select month_start, '*', birth_year, sum(customers)
        from known where birth_year <> 0 group by 1, 2, 3
    ) as b
),

birth_year_medians as (
    -- the median as percentile_disc(0.5): the smallest birth year with at least half at or below it
    select month_start, channel, min(birth_year) as birth_year
    from birth_years
    where total > 0 and running >= 0.5 * total
    group by month_start, channel
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
left join birth_year_medians as bc
    on bc.month_start = date_trunc('month', v.valid_from) and bc.channel = v.acquisition_channel
left join birth_year_medians as bo on bo.month_start = date_trunc('month', v.valid_from) and bo.channel = '*'
left join channel_mode as cm on cm.month_start = date_trunc('month', v.valid_from)
