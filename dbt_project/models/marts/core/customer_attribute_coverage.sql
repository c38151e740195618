{#- Share of customers whose attributes are imputed (current versions), per signup day: how sparse the source is. -#}
select
    signup_date,
    count(*) as customers,
    round(avg(is_imputed_region::int), 4) as share_imputed_region,
    round(avg(is_imputed_birth_year::int), 4) as share_imputed_birth_year,
    round(avg(is_imputed_channel::int), 4) as share_imputed_channel,
    round(avg((not in_customers_feed)::int), 4) as share_missing_from_customers_feed
from {{ ref('int_customer_versions') }}
where is_current
group by signup_date
