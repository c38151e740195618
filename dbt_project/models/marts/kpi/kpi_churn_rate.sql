{#- The realised churn rate per as-of date: of the customers active then, the share who placed no order in the
    label_horizon_days after it. Only as-of dates whose horizon has passed (matured labels) appear. -#}
select
    as_of_date,
    count(*)::bigint as active_customers,
    sum(churned_90d)::bigint as churned_customers,
    round(avg(churned_90d), 4)::numeric(6, 4) as churn_rate,
    sum(revenue_next_90d)::numeric(14, 2) as revenue_next_90d
from {{ ref('customer_features') }}
where label_matured
group by as_of_date
