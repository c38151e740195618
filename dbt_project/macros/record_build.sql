{#-
  Post-hook of the feature marts: one row per build in ops.dbt_model_builds (dbt invocation id,
  relation, row count), which training reads to tag each MLflow run with the dbt build it used.
-#}
{% macro record_build() %}
    create schema if not exists ops;
    create table if not exists ops.dbt_model_builds (
        invocation_id text not null,
        relation text not null,
        row_count bigint not null,
        built_at timestamptz not null default now(),
        primary key (invocation_id, relation)
    );
    insert into ops.dbt_model_builds (invocation_id, relation, row_count)
    select '{{ invocation_id }}', '{{ this.identifier }}', count(*) from {{ this }}
    on conflict (invocation_id, relation) do update set row_count = excluded.row_count, built_at = now();
{% endmacro %}
