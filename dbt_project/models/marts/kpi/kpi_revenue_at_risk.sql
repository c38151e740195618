{#- Revenue at risk per scoring date: the churn model's Production scores times each customer's spend in the
    90 days before (what a churner stops spending). Predicted churners score at least churn_threshold. -#}
{% set threshold = var('churn_threshold') %}
select
    p.as_of_date,
    p.model_version,
    count(*)::bigint as scored_customers,
    count(*) filter (where p.score >= {{ threshold }})::bigint as predicted_churners,
    coalesce(sum(f.amount_90d) filter (where p.score >= {{ threshold }}), 0)::numeric(14, 2) as revenue_at_risk,
    sum(p.score * coalesce(f.amount_90d, 0))::numeric(14, 2) as expected_revenue_at_risk,
    sum(f.amount_90d)::numeric(14, 2) as scored_revenue_90d
from {{ source('scoring', 'predictions') }} p
join {{ ref('customer_features') }} f using (customer_id, as_of_date)
where p.model = '{{ var("churn_model") }}'
group by p.as_of_date, p.model_version
