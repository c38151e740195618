{#-
  The keys of a raw table with a delivery whose timestamp falls on one of `days` (a query of dates). For
  `key = any(array(...))` filters on a staging view: PostgreSQL pushes a condition on the partition key below
  the view's dedupe window (onto the raw key index), so an incremental model reads only those keys.
-#}
{% macro keys_on_days(relation, key, ts_column, days) -%}
    select {{ key }} from {{ relation }} where ({{ ts_column }} at time zone 'UTC')::date in ({{ days }})
{%- endmacro %}
