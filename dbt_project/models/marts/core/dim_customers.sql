{#-
  Customers as a type-2 slowly changing dimension: one row per version of a customer's delivered
  attributes (from the customers_snapshot), valid from its delivery day until the next version.
  Customers never delivered in the customers feed get one version from their first order.
  The current row also carries the enriched (imputed) attributes of int_customers_enriched.
-#}
with versions as (
    select
        customer_id,
        signup_date,
        country,
        birth_year,
        acquisition_channel,
        dbt_valid_from::date as valid_from,
        dbt_valid_to::date as valid_to
    from {{ ref('customers_snapshot') }}
),

enriched as (
    select * from {{ ref('int_customers_enriched') }}
),

orders_only as (
    select customer_id, signup_date, null::text as country, null::integer as birth_year,
           null::text as acquisition_channel, first_order_date as valid_from, null::date as valid_to
    from enriched
    where not in_customers_feed
),

all_versions as (
    select * from versions
    union all
    select * from orders_only
)

select
    md5(v.customer_id::text || '|' || v.valid_from::text) as customer_key,
    v.customer_id,
    v.signup_date,
    v.country,
    v.birth_year,
    v.acquisition_channel,
    v.valid_from,
    v.valid_to,
    v.valid_to is null as is_current,
    case when v.valid_to is null then e.region end as current_region,
    case when v.valid_to is null then e.is_imputed_region end as is_imputed_region,
    case when v.valid_to is null then e.is_imputed_birth_year end as is_imputed_birth_year,
    case when v.valid_to is null then e.is_imputed_channel end as is_imputed_channel
from all_versions as v
left join enriched as e on e.customer_id = v.customer_id
