{#-
  The feature marts' build log, ops.dbt_model_builds (<ci schema>_ops under the `ci` target): one row per
  build (dbt invocation id, relation, row count, and the watermark: the newest load of its inputs it has seen). Training reads it to tag each MLflow
  run with the dbt build it used (customer_features, the view: its row count); each part of customer_features
  reads its own watermark to find late rows.
-#}
{% macro build_log_ddl() %}
    create schema if not exists {{ ops_schema() }};
    create table if not exists {{ ops_schema() }}.dbt_model_builds (
        invocation_id text not null,
        relation text not null,
        row_count bigint not null,
        built_at timestamptz not null default now(),
        primary key (invocation_id, relation)
    );
    alter table {{ ops_schema() }}.dbt_model_builds add column if not exists watermark timestamptz;
{% endmacro %}

{#- on-run-start: the build log's table, when the invocation builds a part of customer_features (a slim CI build of
    other models leaves the schemas alone). -#}
{% macro build_log_ddl_for_feature_parts() %}
    {%- set parts = [] -%}
    {%- for node in (selected_resources if execute else []) if node.startswith('model.mlscale.customer_features_part_') -%}
        {%- do parts.append(node) -%}
    {%- endfor -%}
    {%- if parts %}{{ build_log_ddl() }}{% endif -%}
{% endmacro %}

{#- The build log's row for this build (on-run-start made the table). -#}
{% macro record_build(watermark='null::timestamptz') %}
    insert into {{ ops_schema() }}.dbt_model_builds (invocation_id, relation, row_count, watermark)
    select '{{ invocation_id }}', '{{ this.identifier }}', count(*), {{ watermark }} from {{ this }}
    on conflict (invocation_id, relation)
    do update set row_count = excluded.row_count, watermark = excluded.watermark, built_at = now();
{% endmacro %}
