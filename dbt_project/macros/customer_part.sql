{#- The customers of part `part` of `parts` (0-based): spread by PostgreSQL's hash of customer_id (the hash of its
    hash partitioning), so that every part gets about as many customers whatever pattern the keys follow. -#}
{% macro customer_part(part, parts) -%}
    mod(abs(hashint8(customer_id)::bigint), {{ parts }}) = {{ part }}
{%- endmacro %}
