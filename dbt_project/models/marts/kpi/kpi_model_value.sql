{#- What acting on each Production version's scores earned, per scoring date, once the outcome is known. The
    campaign contacts the top-k share of scored customers by expected gain (margin x response x score x value -
    contact cost, economics from the model_economics seed) and earns margin x response x outcome x value - contact
    cost per contacted customer; at random it would earn k times the average. The same rule as the campaign
    metric logged at training (include/mlscale/modeling/evaluation.py, campaign). -#}
with gains as (
    select
        m.model,
        m.model_version,
        m.as_of_date,
        m.customer_id,
        m.top_k_share,
        e.margin_rate::float8 * e.response_rate::float8 * m.score * m.value - e.contact_cost::float8 as expected_gain,
        e.margin_rate::float8 * e.response_rate::float8 * m.outcome * m.value - e.contact_cost::float8 as realised_gain
    from {{ ref('int_matured_predictions') }} m
    join {{ ref('model_economics') }} e on e.model = m.model
),

ranked as (
    select
        *,
        row_number() over (partition by model, as_of_date order by expected_gain desc, customer_id) as gain_rank,
        count(*) over (partition by model, as_of_date) as scored_customers
    from gains
),

dates as (
    select
        model,
        model_version,
        as_of_date,
        max(scored_customers) as scored_customers,
        ceil(max(top_k_share) * max(scored_customers)) as targeted_customers,
        sum(realised_gain) filter (where gain_rank <= ceil(top_k_share * scored_customers)) as profit,
        avg(realised_gain) as mean_gain
    from ranked
    group by model, model_version, as_of_date
)

select
    model,
    model_version,
    as_of_date,
    scored_customers::bigint as scored_customers,
    targeted_customers::bigint as targeted_customers,
    round(profit::numeric, 2)::numeric(14, 2) as profit,
    round((targeted_customers * mean_gain)::numeric, 2)::numeric(14, 2) as profit_random,
    round((profit - targeted_customers * mean_gain)::numeric, 2)::numeric(14, 2) as profit_uplift
from dates
