{#- The rows of customer_features for the customers `part_filter` (a condition on customer_id) keeps: one part
    of them per model (models/marts/ml/parts), so that PostgreSQL builds the parts on as many cores; customer_features
    is their union. `incremental`: the part's is_incremental(). -#}
{#-
  Point-in-time features: one row per active customer (an order in the active window) per as-of
  date. Every feature uses only activity strictly before the as-of date; labels look at the
  label_horizon_days from the as-of date on and stay NULL until that window has fully passed.
  Customer attributes are those of the customer's version valid the day before the as-of date
  (int_customer_versions: delivered before it, imputed from what was delivered before it).
  Incremental: a run rebuilds only the as-of dates whose rows can have changed, found from the last build's
  data horizon and the days of int_customer_days and customer versions loaded since it (the watermark in
  ops.dbt_model_builds): a day t feeds the features of the as-of dates after it and the labels of the
  label horizon before it, a version valid from t the features of the as-of dates after t. As-of dates
  whose features can have changed (and new ones) are computed in full; those where only a label can have
  changed (the horizon before a new day, or maturing now) keep the rows the last build wrote and get their
  labels again, in one window pass over the days since: a daily run no longer recomputes the features of
  the 13 weeks whose labels are still open. Late rows of any age land as a full refresh would put them.
-#}
{% macro customer_features_rows(part_filter, incremental) -%}
{%- set horizon = var('label_horizon_days') -%}
{%- set window = var('active_window_days') -%}
{%- set label_columns = ['label_matured', 'churned_90d', 'revenue_next_90d', 'observed_last_day'] -%}
{#- The label window, from the as-of date on: the same frame for rows computed in full and for relabelled ones. -#}
{%- set label_frame = "range between current row and interval '" ~ (horizon - 1) ~ " days' following" -%}

-- This part's customers: their days and versions.
with days as (
    select * from {{ ref('int_customer_days') }} where {{ part_filter }}
),

customers as (
    select * from {{ ref('int_customer_versions') }} where {{ part_filter }}
),

{% if incremental %}
watermark as (
    select coalesce(max(watermark), '-infinity'::timestamptz) as loaded_at
    from {{ ops_schema() }}.dbt_model_builds
    where relation = '{{ this.identifier }}'
),

-- The last build's data horizon, and the first day that a day or a customer version loaded since then is about.
since_last_build as (
    select
        (select coalesce(max(observed_last_day), '-infinity'::date) from {{ this }}) as last_day,
        least(
            (
                select coalesce(min(activity_date), 'infinity'::date)
                from days
                where _max_loaded_at > (select loaded_at from watermark)
            ),
            (
                select coalesce(min(valid_from), 'infinity'::date)
                from customers
                where _loaded_at > (select loaded_at from watermark)
            )
        ) as first_changed_day
),
{% endif %}

-- The data's span over every customer: every part has the same as-of dates and the same label horizon.
observed as (
    select min(activity_date) as first_day, max(activity_date) filter (where n_orders > 0) as last_day
    from {{ ref('int_customer_days') }}
),

all_as_of_dates as (
    select as_of_date::date as as_of_date
    from observed,
        generate_series(
            (first_day + {{ var('feature_warmup_days') }})::timestamp,
            last_day::timestamp,
            interval '{{ var('feature_cadence_days') }} days'
        ) as as_of_date
),

-- The as-of dates computed in full: all of them; in an incremental run, the new ones and those after a day or
-- a customer version loaded since the last build.
as_of_dates as (
    select as_of_date from all_as_of_dates
    {% if incremental %}
    where as_of_date > (select least(last_day, first_changed_day) from since_last_build)
    {% endif %}
),

-- The days the windows below read: from the active window before the first as-of date on (all, in a full build).
window_days as (
    select customer_id, activity_date, n_orders, amount, n_items, n_tickets, n_sessions, pages
    from days
    where activity_date >= (select min(as_of_date) from as_of_dates) - {{ window }}
),

-- Every (customer, as-of date) that can be active: as-of dates after the customer's first day of activity and at
-- most the active window after their last.
spans as (
    select customer_id, min(activity_date) as first_day, max(activity_date) as last_day
    from window_days
    group by customer_id
),

-- Each customer's days and as-of dates on one timeline (an as-of date's measures are NULL, so it adds nothing to
-- any sum), read by window frames over dates: the trailing windows end the day before the as-of date, the label
-- window starts on it. One sort of the timeline replaces a join of every day to every as-of date it feeds.
timeline as (
    select s.customer_id, d.as_of_date as activity_date, true as is_as_of_date,
           null::integer as n_orders, null::numeric as amount, null::integer as n_items, null::integer as n_tickets,
           null::integer as n_sessions, null::integer as pages
    from spans as s
    inner join as_of_dates as d on d.as_of_date > s.first_day and d.as_of_date <= s.last_day + {{ window }}
    union all
    select customer_id, activity_date, false, n_orders, amount, n_items, n_tickets, n_sessions, pages
    from window_days
),

windowed as (
    select
        customer_id,
        activity_date as as_of_date,
        is_as_of_date,
        -- Within the active window: an active customer's last order is in it, and an older session counts as none.
        max(case when n_orders > 0 then activity_date end) over active_window as last_order_date,
        max(case when n_sessions > 0 then activity_date end) over active_window as last_session_date,
        sum(n_orders) over last_7d as orders_7d,
        sum(n_orders) over last_30d as orders_30d,
        sum(n_orders) over prev_30d as orders_prev_30d,
        sum(n_orders) over last_90d as orders_90d,
        sum(n_orders) over active_window as orders_{{ window }}d,
        sum(amount) over last_30d as amount_30d,
        sum(amount) over last_90d as amount_90d,
        sum(amount) over active_window as amount_{{ window }}d,
        sum(n_items) over last_90d as items_90d,
        sum(n_tickets) over last_90d as tickets_90d,
        sum(n_sessions) over last_7d as sessions_7d,
        sum(n_sessions) over last_30d as sessions_30d,
        sum(n_sessions) over prev_30d as sessions_prev_30d,
        sum(pages) over last_30d as pages_30d,
        sum(n_orders) over label_window as orders_next,
        sum(amount) over label_window as amount_next
    from timeline
    window
        -- Each distinct frame is one pass of PostgreSQL's WindowAgg over the timeline (the cost of a full build).
        by_day as (partition by customer_id order by activity_date),
        last_7d as (by_day range between interval '7 days' preceding and interval '1 day' preceding),
        last_30d as (by_day range between interval '30 days' preceding and interval '1 day' preceding),
        prev_30d as (by_day range between interval '60 days' preceding and interval '31 days' preceding),
        last_90d as (by_day range between interval '90 days' preceding and interval '1 day' preceding),
        active_window as (by_day range between interval '{{ window }} days' preceding and interval '1 day' preceding),
        label_window as (by_day {{ label_frame }})
),

-- Active: an order in the active window before the as-of date.
active as (
    select * from windowed where is_as_of_date and last_order_date is not null
),

-- The whole order history up to the last order before the as-of date (not only the active window): the
-- buy-till-you-die summary (Fader, Hardie & Lee 2005) of repeat order days, their span (from the customer's
-- first_order_date) and the gaps. Running totals over each customer's order days, read at the last order day
-- before the as-of date: one sort of the order days and an equi-join, where a scan of the customer's days per
-- as-of date took most of a full build (bench/chain_scale.py, BENCHMARKS.md).
order_days as (
    select
        customer_id,
        activity_date,
        count(*) over w as order_days,
        sum(n_orders) over w as orders,
        sum(amount) over w as amount,
        lag(activity_date) over w as previous_order_date
    from days
    where n_orders > 0
        and customer_id in (select customer_id from active)
    window w as (partition by customer_id order by activity_date rows between unbounded preceding and current row)
),

lifetime as (
    select a.as_of_date, a.customer_id, o.order_days, o.orders, o.amount, o.previous_order_date
    from active as a
    inner join order_days as o on o.customer_id = a.customer_id and o.activity_date = a.last_order_date
),

built as (
    select
        a.customer_id,
        a.as_of_date,
        a.as_of_date - c.first_order_date as tenure_days,
        a.as_of_date - a.last_order_date as recency_days,
        coalesce(a.orders_7d, 0)::integer as orders_7d,
        coalesce(a.orders_30d, 0)::integer as orders_30d,
        coalesce(a.orders_90d, 0)::integer as orders_90d,
        a.orders_{{ window }}d::integer as orders_{{ window }}d,
        (coalesce(a.orders_30d, 0) - coalesce(a.orders_prev_30d, 0))::integer as orders_trend_30d,
        coalesce(a.amount_30d, 0)::numeric(14, 2) as amount_30d,
        coalesce(a.amount_90d, 0)::numeric(14, 2) as amount_90d,
        a.amount_{{ window }}d::numeric(14, 2) as amount_{{ window }}d,
        round(a.amount_{{ window }}d / nullif(a.orders_{{ window }}d, 0), 2)::numeric(14, 2) as avg_order_value,
        coalesce(a.items_90d, 0)::integer as items_90d,
        coalesce(a.tickets_90d, 0)::integer as tickets_90d,
        coalesce(a.sessions_7d, 0)::integer as sessions_7d,
        coalesce(a.sessions_30d, 0)::integer as sessions_30d,
        (coalesce(a.sessions_30d, 0) - coalesce(a.sessions_prev_30d, 0))::integer as sessions_trend_30d,
        coalesce(a.pages_30d, 0)::integer as pages_30d,
        a.as_of_date - a.last_session_date as days_since_last_session,
        (l.order_days - 1)::integer as repeat_order_days,
        a.last_order_date - c.first_order_date as first_to_last_order_days,
        l.orders::integer as lifetime_orders,
        round(l.amount / l.orders, 2)::numeric(14, 2) as lifetime_avg_order_value,
        round((a.last_order_date - c.first_order_date)::numeric / nullif(l.order_days - 1, 0), 1)::numeric(10, 1)
            as mean_order_gap_days,
        a.last_order_date - l.previous_order_date as last_order_gap_days,
        c.region,
        (extract(year from a.as_of_date) - c.birth_year)::integer as age,
        c.acquisition_channel,
        c.is_imputed_region,
        c.is_imputed_birth_year,
        c.is_imputed_channel,
        {{ feature_labels('a.as_of_date', 'a.orders_next', 'a.amount_next') }}
    from active as a
    cross join observed
    inner join customers as c
        on c.customer_id = a.customer_id
        and c.valid_from < a.as_of_date
        and (c.valid_to is null or c.valid_to >= a.as_of_date)
    inner join lifetime as l on l.customer_id = a.customer_id and l.as_of_date = a.as_of_date
)
{% if incremental %}
,

-- As-of dates whose features stand but a label can have changed: a new day falls in its label window, or the
-- window matures now (late_row_allowance_days: a margin).
relabel_dates as (
    select as_of_date
    from all_as_of_dates, since_last_build
    where as_of_date > least(last_day - {{ horizon }} - {{ var('late_row_allowance_days') }},
                             first_changed_day - {{ horizon }})
        and as_of_date <= least(last_day, first_changed_day)
),

-- Their rows as the last build wrote them, on one timeline with the days from the first of them on: the label
-- window of each in one window pass.
relabel_timeline as (
    select customer_id, as_of_date as activity_date, true as is_as_of_date, null::integer as n_orders,
           null::numeric as amount
    from {{ this }}
    where as_of_date in (select as_of_date from relabel_dates)
    union all
    select customer_id, activity_date, false, n_orders, amount
    from days
    where activity_date >= (select min(as_of_date) from relabel_dates)
),

relabel_windows as (
    select
        customer_id,
        activity_date as as_of_date,
        is_as_of_date,
        sum(n_orders) over label_window as orders_next,
        sum(amount) over label_window as amount_next
    from relabel_timeline
    window label_window as (partition by customer_id order by activity_date {{ label_frame }})
),

{%- set existing = adapter.get_columns_in_relation(this) | map(attribute='name') | list %}

relabelled as (
    select
        {%- for column in existing if column not in label_columns %}
        f.{{ column }},
        {%- endfor %}
        {{ feature_labels('f.as_of_date', 'w.orders_next', 'w.amount_next') }}
    from {{ this }} as f
    cross join observed
    inner join relabel_windows as w
        on w.customer_id = f.customer_id and w.as_of_date = f.as_of_date and w.is_as_of_date
)


select {{ existing | join(', ') }} from built
union all
select {{ existing | join(', ') }} from relabelled
{% else %}

select * from built
{% endif %}
{%- endmacro %}
