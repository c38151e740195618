{#-
  Customers as a type-2 slowly changing dimension: one row per version of a customer's attributes,
  valid from valid_from until the day before valid_to, with the enriched (imputed) attributes as they
  were known then. Versions and imputation rules: int_customer_versions.
-#}
select
    md5(customer_id::text || '|' || valid_from::text) as customer_key,
    customer_id,
    signup_date,
    first_order_date,
    country,
    region,
    birth_year,
    acquisition_channel,
    is_imputed_region,
    is_imputed_birth_year,
    is_imputed_channel,
    in_customers_feed,
    valid_from,
    valid_to,
    is_current
from {{ ref('int_customer_versions') }}
