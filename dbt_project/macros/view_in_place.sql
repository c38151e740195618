{#-
  A view replaced in place: `create or replace view`, one statement, instead of dbt's create-rename-drop. dbt's
  view materialization drops the old view with CASCADE (dbt-core #2185, "wontfix"), which drops every view that
  reads it: for customer_features, rebuilt by every warehouse_etl run, that was int_matured_predictions (monitoring
  then rebuilt it, a dbt invocation per run) and any view a user made on the mart. PostgreSQL replaces a view in
  place when the new query keeps the old columns (names and types, in order; new ones only at the end); views on it,
  grants and comments stay. A column change fails here with PostgreSQL's message: `dbt build --full-refresh`
  (or a full refresh of the parts, which drops the view) replaces it the default way.
-#}
{% materialization view_in_place, adapter='postgres' %}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- if existing_relation is none or existing_relation.type != 'view' or should_full_refresh() -%}
    {{ return(materialization_view_default()) }}
  {%- endif -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- if config.get('contract').enforced -%}
    {{ exceptions.raise_compiler_error("view_in_place does not enforce contracts; enforce them on its parents") }}
  {%- endif -%}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}
  {% call statement('main') -%}
    create or replace view {{ target_relation.render() }} as (
      {{ sql }}
    );
  {%- endcall %}
  {% do apply_grants(target_relation, config.get('grants'), should_revoke=True) %}
  {% do persist_docs(target_relation, model) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {{ adapter.commit() }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
