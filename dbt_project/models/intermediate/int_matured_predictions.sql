{#- Production predictions whose outcome is known: each model's scores joined to its label (from the matured rows of
    customer_features) and to the customer's value for the campaign. Which label, value column and top-k share belong
    to which model comes from the model specs (include/models/*.yml), passed in as the model_campaigns var by
    `mlscale report` and monitoring (mlscale.production.outcomes); without it the model is empty. The view's comment records the
    campaigns it was built with, so a reader knows whether it covers its model. -#}
{{ config(materialized='view', tags=['kpi'], post_hook="{{ comment_with_model_campaigns() }}") }}
{% set campaigns = var('model_campaigns') %}
{% if campaigns %}
{% for name, c in campaigns.items() %}
select
    p.model,
    p.model_version,
    p.as_of_date,
    p.customer_id,
    p.score,
    p.decile,
    f.{{ c['label'] }}::float8 as outcome,
    {% if c.get('value_column') %}coalesce(f.{{ c['value_column'] }}, 0)::float8{% else %}1.0::float8{% endif %} as value,
    {{ c['top_k_share'] }}::float8 as top_k_share
from {{ source('scoring', 'predictions') }} p
join {{ ref('customer_features') }} f using (customer_id, as_of_date)
where p.model = '{{ name }}' and f.label_matured
{% if not loop.last %}union all{% endif %}
{% endfor %}
{% else %}
select
    null::text as model, null::text as model_version, null::date as as_of_date, null::bigint as customer_id,
    null::float8 as score, null::smallint as decile, null::float8 as outcome, null::float8 as value,
    null::float8 as top_k_share
where false
{% endif %}
