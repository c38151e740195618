{#- The customers of part `part` of `parts` (0-based): spread by PostgreSQL's hash of customer_id (the hash of its
    hash partitioning), so that every part gets about as many customers whatever pattern the keys follow. -#}
{% macro customer_part(part, parts) -%}
    {{ customer_part_of(parts) }} = {{ part }}
{%- endmacro %}

{% macro customer_part_of(parts) -%}
    mod(abs(hashint8(customer_id)::bigint), {{ parts }})
{%- endmacro %}

{#- A post-hook of the tables the parts read: statistics on the part expression, so that PostgreSQL estimates a part's
    share of the rows (1 / parts) instead of its default for an equality on an expression (0.5%). On that guess, a
    full refresh of the parts on a 1M warehouse (after daily runs had analyzed its tables) was planned as nested loops
    that ran a window over millions of rows once per row, and did not finish in 35 minutes. Created (and the table
    analyzed, about 2 s at 1M) once per table: on a first build, a full refresh (a new table), or a warehouse built
    before; the statistics object is named after the table's oid, as a full refresh's new table exists next to the
    old one until dbt drops it. -#}
{% macro customer_part_statistics(parts) -%}
    do $$
    declare
        target regclass := '{{ this }}'::regclass;
    begin
        if not exists (select from pg_statistic_ext where stxrelid = target) then
            execute format('create statistics %I.%I on (%s) from %s', '{{ this.schema }}',
                           '{{ this.identifier }}__parts_' || target::oid, '{{ customer_part_of(parts) }}', target);
            execute format('analyze %s', target);
        end if;
    end
    $$
{%- endmacro %}
