{{ config(materialized='view_in_place', post_hook="{{ record_build() }}") }}
{#-
  The feature mart: the union of its parts (models/marts/ml/parts, macros/customer_features_rows.sql), each the
  rows of half of the customers. PostgreSQL runs a statement's window functions in one process, so the mart as one
  statement used one core of two; the two parts build at the same time (dbt's two threads). A query on the view
  reads both parts' indexes (a filter on as_of_date or customer_id is applied in each).
  Its build records the dbt invocation that training logs as lineage (ops.dbt_model_builds).
-#}
select * from {{ ref('customer_features_part_0') }}
union all
select * from {{ ref('customer_features_part_1') }}
