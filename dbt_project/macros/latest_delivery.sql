{#-
  Keep the latest delivery of each key of a raw table: the row loaded last wins (ties: the later
  file, then the later line). Used by every staging model, so re-delivered files, duplicate rows
  and corrections all resolve the same way.

  Only files a warehouse_etl run has claimed (and put through its raw gate) or published are read: a file
  that ingest_landing loads while a run is between its claim and dbt waits for the next run and its gate
  (incremental models find it then: its rows were loaded after every row this run saw). Rows without a
  ledger entry (written by hand) are read. The filter is an anti-join on the few unclaimed files, not a
  join on the whole ledger, and it sits below the window, so a newer unchecked delivery never wins.
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
        where _file_sha256 not in (
            select sha256 from {{ source('ops', 'ingest_files') }} where status = 'loaded' and etl_status is null
        )
    ) as ranked
    where _delivery_rank = 1
{%- endmacro %}
