{#-
  Tests with `where: "__batch_keys__"` (the staging models' tests) check only the keys that the files
  claimed by this warehouse_etl run delivered (every delivery of those keys, through the dedupe window):
  the condition is on the window's partition key, so PostgreSQL applies it below the window. Measured on a
  3,000-day history: the tests of stg_shop__orders, order_items and web_sessions in 5.1 s instead of 10.5-13.1 s
  (a condition on _loaded_at could not be applied below the window, and an `or` fallback stops PostgreSQL from
  using the key index). They check every key, unfiltered, when no file is claimed (a manual build, a full
  refresh) or when the claimed files hold over a fifth of the feed's loaded rows (a first load): there an array
  of every key costs more than it saves (at 1M customers, 26M order-line keys: a bitmap scan that went lossy
  rechecked each row against the whole array, and the two order_items tests ran for over 11 minutes).
  Other `where` configs work as in dbt's own macro.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where == '__batch_keys__' and relation.identifier not in var('staging_keys') -%}
        {#- the source tests in the staging folder: plain raw tables, no dedupe window to avoid -#}
        {%- do return(relation) -%}
    {%- elif where == '__batch_keys__' -%}
        {%- set key = var('staging_keys')[relation.identifier] -%}
        {%- set feed = relation.identifier.replace('stg_shop__', '') -%}
        {%- set raw = source('shop', feed) -%}
        {%- set share = none -%}
        {%- if execute -%}
            {%- set share = run_query("select sum(rows_loaded) filter (where etl_status = 'claimed')::float"
                                      ~ " / nullif(sum(rows_loaded), 0) from " ~ source('ops', 'ingest_files')
                                      ~ " where status = 'loaded' and feed = '" ~ feed ~ "'").columns[0].values()[0] -%}
        {%- endif -%}
        {%- if share is none or share == 0 or share > 0.2 -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ key }} = any(array(
                select {{ key }} from {{ raw }} where _file_sha256 in
                    (select sha256 from {{ source('ops', 'ingest_files') }} where etl_status = 'claimed')))) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- elif where -%}
        {%- do return("(select * from " ~ relation ~ " where " ~ where ~ ") dbt_subquery") -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
