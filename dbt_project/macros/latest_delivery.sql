{#-
  Keep the latest delivery of each key of a raw table: the row loaded last wins (ties: the later
  file, then the later line). Used by every staging model, so re-delivered files, duplicate rows
  and corrections all resolve the same way.
-#}
{% macro latest_delivery(relation, key_columns) -%}
    select *
    from (
        select
            *,
            row_number() over (
                partition by {{ key_columns | join(', ') }}
                order by _loaded_at desc, _file_sha256 desc, _line_no desc
            ) as _delivery_rank
        from {{ relation }}
    ) as ranked
    where _delivery_rank = 1
{%- endmacro %}
