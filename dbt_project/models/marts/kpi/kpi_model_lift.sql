{#- Lift and cumulative gain per Production version over all its matured scoring dates: for each score decile
    (1 = highest scores), its customers, their outcome (churners, or spend), the lift over the version's average
    and the share of the whole outcome captured by this and the higher deciles. -#}
with deciles as (
    select model, model_version, decile, count(*) as customers, sum(outcome) as outcome
    from {{ ref('int_matured_predictions') }}
    group by model, model_version, decile
),

totals as (
    select model, model_version, sum(customers) as customers, sum(outcome) as outcome
    from deciles
    group by model, model_version
)

select
    d.model,
    d.model_version,
    d.decile::smallint as decile,
    d.customers::bigint as customers,
    round(d.outcome::numeric, 2)::numeric(14, 2) as outcome,
    round((d.outcome / d.customers)::numeric, 4)::numeric(14, 4) as outcome_rate,
    round(((d.outcome / d.customers) / nullif(t.outcome / t.customers, 0))::numeric, 4)::numeric(10, 4) as lift,
    round((sum(d.outcome) over (partition by d.model, d.model_version order by d.decile)
           / nullif(t.outcome, 0))::numeric, 4)::numeric(6, 4) as cumulative_gain,
    round((sum(d.customers) over (partition by d.model, d.model_version order by d.decile)
           / t.customers)::numeric, 4)::numeric(6, 4) as cumulative_share_contacted
from deciles d
join totals t using (model, model_version)
