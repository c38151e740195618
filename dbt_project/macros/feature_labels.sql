{#- customer_features' label columns, the same for a row computed in full and for one relabelled: from the
    orders and amount in its label window, once the window has passed (within the data observed). -#}
{% macro feature_labels(as_of_date, orders_next, amount_next) -%}
    {%- set horizon = var('label_horizon_days') -%}
    {{ as_of_date }} + {{ horizon }} <= observed.last_day as label_matured,
    (case when {{ as_of_date }} + {{ horizon }} <= observed.last_day
        then case when coalesce({{ orders_next }}, 0) = 0 then 1 else 0 end
    end)::integer as churned_90d,
    (case when {{ as_of_date }} + {{ horizon }} <= observed.last_day
        then coalesce({{ amount_next }}, 0)
    end)::numeric(14, 2) as revenue_next_90d,
    observed.last_day as observed_last_day
{% endmacro %}
