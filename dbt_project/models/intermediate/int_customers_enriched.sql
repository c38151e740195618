{#-
  Every customer (from the customers feed, or first seen in orders when the feed is missing) with
  sparse attributes filled in. Imputation rules, each flagged by an is_imputed_* column:
    region          country -> region via the country_regions seed; an unknown or unmapped
                    country gets the most common region among customers whose region is known.
    birth_year      the median birth year of known customers with the same acquisition channel;
                    else the median of all known customers; else var('fallback_birth_year').
    acquisition_channel  the most common channel among known customers who signed up in the same
                    month; else the most common channel overall; else 'unknown'.
-#}
with customers as (
    select * from {{ ref('stg_shop__customers') }}
),

orders as (
    select * from {{ ref('stg_shop__orders') }}
),

regions as (
    select * from {{ ref('country_regions') }}
),

first_orders as (
    select customer_id, min(order_date) as first_order_date
    from orders
    group by customer_id
),

spine as (
    select
        coalesce(c.customer_id, f.customer_id) as customer_id,
        coalesce(c.signup_date, f.first_order_date) as signup_date,
        f.first_order_date,
        c.country,
        c.birth_year,
        c.acquisition_channel,
        c.customer_id is not null as in_customers_feed
    from customers as c
    full outer join first_orders as f on f.customer_id = c.customer_id
),

with_region as (
    select spine.*, regions.region as known_region
    from spine
    left join regions on regions.country = spine.country
),

region_mode as (
    select mode() within group (order by known_region) as region from with_region where known_region is not null
),

birth_year_by_channel as (
    select acquisition_channel, percentile_disc(0.5) within group (order by birth_year) as birth_year
    from spine
    where birth_year is not null and acquisition_channel is not null
    group by acquisition_channel
),

birth_year_overall as (
    select percentile_disc(0.5) within group (order by birth_year) as birth_year from spine where birth_year is not null
),

channel_by_month as (
    select date_trunc('month', signup_date) as signup_month, mode() within group (order by acquisition_channel) as channel
    from spine
    where acquisition_channel is not null
    group by 1
),

channel_overall as (
    select mode() within group (order by acquisition_channel) as channel from spine where acquisition_channel is not null
)

select
    w.customer_id,
    w.signup_date,
    w.first_order_date,
    w.country,
    coalesce(w.known_region, region_mode.region, 'unknown') as region,
    coalesce(w.birth_year, by_channel.birth_year, birth_year_overall.birth_year, {{ var('fallback_birth_year') }}) as birth_year,
    coalesce(w.acquisition_channel, by_month.channel, channel_overall.channel, 'unknown') as acquisition_channel,
    w.known_region is null as is_imputed_region,
    w.birth_year is null as is_imputed_birth_year,
    w.acquisition_channel is null as is_imputed_channel,
    w.in_customers_feed
from with_region as w
cross join region_mode
cross join birth_year_overall
cross join channel_overall
left join birth_year_by_channel as by_channel on by_channel.acquisition_channel = w.acquisition_channel
left join channel_by_month as by_month on by_month.signup_month = date_trunc('month', w.signup_date)
