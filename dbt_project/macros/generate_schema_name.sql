{#-
  Models land in the schema their folder names (staging, ml, ...), not <target>_<schema>. The `ci` target
  (slim CI, `mlscale dbt-ci`) prefixes them with its own schema instead (ci_x_staging, ci_x_ml, ...), so a
  CI build never replaces a relation the pipeline uses.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- set name = custom_schema_name | trim if custom_schema_name is not none else target.schema -%}
    {%- if target.name == 'ci' and custom_schema_name is not none -%}
        {{ target.schema }}_{{ name }}
    {%- else -%}
        {{ name }}
    {%- endif -%}
{%- endmacro %}

{#- The schema of the build log (ops.dbt_model_builds): a CI build keeps its own, so it never moves the
    watermark the pipeline's incremental runs read. -#}
{% macro ops_schema() -%}
    {{ target.schema ~ '_ops' if target.name == 'ci' else 'ops' }}
{%- endmacro %}
