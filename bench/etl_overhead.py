"""Benchmark: what warehouse_etl through Airflow costs over the work itself, and what the GX gates cost over SQL.

On the demo shop (3,000 customers, 300 days of history built once), new days land one at a time and are
loaded by ingest; the days alternate between two ways of taking a day to the marts:
  airflow:  `warehouse_etl` through Airflow (`dag.test()`, every task, as the scheduler runs it);
  baseline: the same work bare, in this process: claim the files (one UPDATE), the raw checks as plain SQL,
            `dbt build` (the dbt CLI, the project's default selector, as `mlscale etl` runs it) and the vacuum
            after it, the mart checks as plain SQL, publish (one UPDATE).
The plain-SQL checks are written from the same suite files (include/gx/*.yml): one aggregate query per suite
computing every expectation in it. After each baseline day, the GX gates run on the same batch and their
unexpected counts and verdicts are checked against the SQL's (so the two compute the same checks), and both
are timed: the GX gate as warehouse_etl runs it (results recorded) against the SQL, and apart the run's Data Docs
step after both gates (the SQL makes no report). Prints the medians and the ratios (targets: warehouse_etl at most
1.25x the baseline; GX at most 2x the SQL), and the slowest tasks of the last Airflow run. Also GX's floor: the least
a gate can be, one expectation on a one-row query in the same context and checkpoint (each gate pays it), against
the SQL of every check. `--customers` sets the shop's size: the overhead per run is fixed, so the ratio falls as the day's work grows.
Own databases (suffix _bench_etl, dropped at the end), a temporary landing folder (removed).
Usage:
    .venv/bin/python bench/etl_overhead.py [--rounds 3] [--customers 3000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

os.environ["MLSCALE_DB_SUFFIX"] = "_bench_etl"  # it drops and rebuilds its warehouse: not the other benches' _bench
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
LANDING = tempfile.TemporaryDirectory(prefix="mlscale-bench-etl-")  # removed at the end
os.environ["MLSCALE_LANDING_DIR"] = LANDING.name

from mlscale.config import Settings  # noqa: E402

os.environ.update(Settings.from_env().service_env())

from psycopg import sql  # noqa: E402

from mlscale import postgres  # noqa: E402
from mlscale.airflow import dagrun  # noqa: E402
from mlscale.airflow.dbt_group import PRODUCER  # noqa: E402
from mlscale.data import quality, warehouse  # noqa: E402
from mlscale.data.ingest import ingest_landing  # noqa: E402
from mlscale.local import services  # noqa: E402
from mlscale.local.datagen import ShopParams, generate  # noqa: E402
from mlscale.local.demo import output_to  # noqa: E402

FLOOR_SUITE = {"name": "bench_floor", "query": "select 1 as one",
               "expectations": [{"type": "expect_table_row_count_to_be_between",
                                 "kwargs": {"min_value": 1, "max_value": 1}}]}


def _unexpected(cond: str, column: str, mostly: float) -> tuple[list[str], float]:
    """The aggregates [unexpected count, non-null count] of a column-map expectation (GX leaves NULLs out of both),
    and its `mostly`."""
    col = sql.Identifier(column).as_string(None)
    return [f"count(*) filter (where {col} is not null and not ({cond.format(col=col)}))",
            f"count({col})"], mostly


def _literal(value) -> str:
    return sql.Literal(value).as_string(None)


def expectation_sql(exp: dict) -> tuple[list[str], object]:
    """The aggregates that compute one expectation over a relation, and how to judge them."""
    kw, kind = exp.get("kwargs", {}), exp["type"]
    if kind == "expect_column_values_to_not_be_null":
        col = sql.Identifier(kw["column"]).as_string(None)
        return [f"count(*) filter (where {col} is null)", "count(*)"], kw.get("mostly", 1.0)
    if kind == "expect_column_values_to_be_between":
        bounds = [f"{{col}} >= {_literal(kw['min_value'])}" if kw.get("min_value") is not None else "true",
                  f"{{col}} <= {_literal(kw['max_value'])}" if kw.get("max_value") is not None else "true"]
        return _unexpected(" and ".join(bounds), kw["column"], kw.get("mostly", 1.0))
    if kind == "expect_column_values_to_be_in_set":
        values = ", ".join(_literal(v) for v in kw["value_set"])
        return _unexpected(f"{{col}} in ({values})", kw["column"], kw.get("mostly", 1.0))
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = (sql.Identifier(kw[k]).as_string(None) for k in ("column_A", "column_B"))
        op = ">=" if kw.get("or_equal") else ">"
        return [f"count(*) filter (where ({a} is not null or {b} is not null) and not coalesce({a} {op} {b}, false))",
                f"count(*) filter (where {a} is not null or {b} is not null)"], kw.get("mostly", 1.0)
    if kind == "expect_table_row_count_to_be_between":
        return ["count(*)"], (kw.get("min_value"), kw.get("max_value"))
    if kind == "expect_column_mean_to_be_between":
        return [f"avg({sql.Identifier(kw['column']).as_string(None)})::float8"], (kw.get("min_value"),
                                                                                   kw.get("max_value"))
    raise ValueError(f"no SQL for {kind}")


def _judge(values: tuple, rule) -> tuple[bool, int | None]:
    """(success, unexpected count) from an expectation's aggregates."""
    if isinstance(rule, tuple):  # an observed value within [min, max]
        (observed,), (lo, hi) = values, rule
        return observed is not None and (lo is None or observed >= lo) and (hi is None or observed <= hi), None
    unexpected, total = values
    return total == 0 or unexpected / total <= 1 - rule + 1e-12, unexpected


def sql_gate(settings: Settings, names: list[str], run_id: str) -> dict[str, list[tuple[bool, int | None]]]:
    """Every suite's expectations as one aggregate query over its rows: (success, unexpected count) each."""
    out = {}
    with postgres.warehouse(settings) as conn:
        for name in names:
            spec = quality.load_suite(settings.gx_dir / f"{name}.yml")
            relation = quality._query(spec, run_id) or f"select * from {spec['table']}"
            if (spec.get("scope") == "batch" or spec.get("skip_when_empty")) and \
                    conn.execute(f"select not exists ({relation})").fetchone()[0]:
                continue  # as the gate: a batch-scoped suite with no rows is skipped
            parts = [expectation_sql(exp) for exp in spec["expectations"]]
            row = conn.execute(f"select {', '.join(a for aggs, _ in parts for a in aggs)} from ({relation}) as r"
                               ).fetchone()
            results, i = [], 0
            for aggs, rule in parts:
                results.append(_judge(row[i:i + len(aggs)], rule))
                i += len(aggs)
            out[name] = results
    return out


def gx_gate(settings: Settings, names: list[str], run_id: str) -> dict[str, list[tuple[bool, int | None]]]:
    """The GX gate as warehouse_etl runs it, read back as (success, unexpected count) per expectation."""
    quality.gate(settings, names, run_id)
    with postgres.warehouse(settings) as conn:
        rows = conn.execute("select suite, success, unexpected_count from ops.dq_results where run_id = %s"
                            " and suite = any(%s) order by id", (run_id, names)).fetchall()
    out: dict[str, list] = {}
    for suite, success, unexpected in rows:
        out.setdefault(suite, []).append((success, unexpected))
    return out


def land_day(settings: Settings, shop: ShopParams, day: int) -> None:
    generate(dataclasses.replace(shop, days=day + 1), settings.landing_dir,
             days=range(day, day + 1), progress_every=0)
    ingest_landing(settings.dsn(settings.warehouse_db), settings.landing_dir)


def baseline(settings: Settings, run_id: str) -> dict[str, float]:
    """The day's work bare: claim, raw checks in SQL, dbt build, vacuum, mart checks in SQL, publish."""
    t = {}
    t0 = time.monotonic()
    warehouse.claim_batch(settings, run_id)
    t1 = time.monotonic()
    raw = sql_gate(settings, quality.suites(settings, "raw"), run_id)
    t2 = time.monotonic()
    warehouse.dbt(settings, "build")
    warehouse.vacuum_and_analyze(settings)
    t3 = time.monotonic()
    marts = sql_gate(settings, quality.suites(settings, "mart"), run_id)
    t4 = time.monotonic()
    warehouse.publish_batch(settings, run_id)
    t["total"] = time.monotonic() - t0
    t["dbt build + vacuum"], t["sql checks"] = t3 - t2, (t2 - t1) + (t4 - t3)
    failed = [n for n, res in {**raw, **marts}.items() if not all(ok for ok, _ in res)]
    if failed:
        raise SystemExit(f"baseline day {run_id}: checks failed in {failed}: the generated day should pass")
    t["sql"] = (raw, marts)
    return t


def compare_gx(settings: Settings, run_id: str, sql_results) -> tuple[float, float, float, float, float]:
    """GX gates on the baseline's batch, checked against the SQL results, then the run's Data Docs;
    (gx raw, gx mart, sql raw, sql mart, data docs) s."""
    times = []
    for layer, expected in zip(("raw", "mart"), sql_results):
        names = quality.suites(settings, layer)
        t0 = time.monotonic()
        got = gx_gate(settings, names, run_id)
        times.append(time.monotonic() - t0)
        if got != expected:
            raise SystemExit(f"GX and SQL disagree on the {layer} suites:\nGX:  {got}\nSQL: {expected}")
    t0 = time.monotonic()
    quality.build_docs(settings, run_id)
    docs = time.monotonic() - t0
    for layer in ("raw", "mart"):
        t0 = time.monotonic()
        sql_gate(settings, quality.suites(settings, layer), run_id)
        times.append(time.monotonic() - t0)
    return (*times, docs)


def gx_floor(settings: Settings, run_id: str) -> float:
    """Seconds of the least GX gate: one expectation on a one-row query, through the gate's own code."""
    t0 = time.monotonic()
    results = quality.run_suites(settings, [FLOOR_SUITE], run_id)
    seconds = time.monotonic() - t0
    if not results["bench_floor"][0].success:
        raise SystemExit("GX floor: one row expected, GX saw otherwise")
    return seconds


def newest_as_of(settings: Settings) -> str:
    with postgres.warehouse(settings) as conn:
        return conn.execute("select max(as_of_date)::text from ml.customer_features").fetchone()[0]


def kind_of_day(before: str, after: str) -> str:
    """What the day's feature build was, from the newest as-of date before and after it (a new as-of date costs
    the seven window passes: BENCHMARKS.md)."""
    return "new as-of date" if after != before else "relabels"


def task_seconds(settings: Settings, run_id: str) -> list[tuple[str, float]]:
    """Each task's duration in one warehouse_etl run, longest first (from Airflow's metadata DB)."""
    with postgres.database(settings, settings.airflow_db) as conn:
        rows = conn.execute("select task_id, extract(epoch from end_date - start_date)::float8 from task_instance"
                            " where dag_id = 'warehouse_etl' and run_id = %s order by 2 desc", (run_id,)).fetchall()
    return [(t, s) for t, s in rows if s is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--customers", type=int, default=ShopParams.customers, help="the shop's customers (300 days)")
    args = parser.parse_args()
    settings = Settings.from_env()
    postgres.ensure_databases(settings, [settings.warehouse_db, settings.airflow_db])
    try:
        measure(settings, ShopParams(customers=args.customers), args.rounds)
    finally:  # a 100k warehouse is several GiB
        postgres.drop_databases(settings, [settings.warehouse_db, settings.airflow_db])
        LANDING.cleanup()


def measure(settings: Settings, shop: ShopParams, rounds: int) -> None:
    """Build the shop's history, then `rounds` rounds of a day through Airflow and a day bare; print the figures."""
    warehouse.drop_schemas(settings)
    services.migrate_airflow_db(settings)
    services.build_dbt_manifest(settings)
    log = settings.log_dir / "bench_etl_overhead.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"task logs: {log}; landing: {settings.landing_dir}", flush=True)
    t0 = time.monotonic()
    with output_to(log):
        generate(shop, settings.landing_dir, progress_every=0)
        ingest_landing(settings.dsn(settings.warehouse_db), settings.landing_dir)
        warehouse.run_etl(settings, "bench-history")
        dagrun.run_dag(settings, "warehouse_etl")  # the bundle parsed and one run done before timing
    print(f"history: {shop.customers:,} customers, {shop.days} days built in {time.monotonic() - t0:.0f} s", flush=True)

    airflow, bare, dbt_s, check_s, gx, floor = [], [], [], [], [], []
    day = shop.days
    for r in range(rounds):
        before = newest_as_of(settings)
        with output_to(log):
            land_day(settings, shop, day)
            result = dagrun.run_dag(settings, "warehouse_etl")
        airflow.append(result.seconds)
        tasks = task_seconds(settings, result.run_id)
        after = newest_as_of(settings)
        airflow_day, before = kind_of_day(before, after), after
        run_id = f"bench-baseline-{day + 1}"
        with output_to(log):
            land_day(settings, shop, day + 1)
            b = baseline(settings, run_id)
        bare_day = kind_of_day(before, newest_as_of(settings))
        with output_to(log):
            gx.append(compare_gx(settings, run_id, b.pop("sql")))
            floor.append(gx_floor(settings, run_id))
        bare.append(b["total"])
        dbt_s.append(b["dbt build + vacuum"])
        check_s.append(b["sql checks"])
        print(f"round {r + 1}: warehouse_etl through Airflow {airflow[-1]:.1f} s (day {day}, {airflow_day}); baseline "
              f"{bare[-1]:.1f} s (dbt build + vacuum {dbt_s[-1]:.1f} s, SQL checks {check_s[-1]:.2f} s; "
              f"day {day + 1}, {bare_day}); "
              f"GX raw {gx[-1][0]:.1f} s, mart {gx[-1][1]:.1f} s, SQL raw {gx[-1][2]:.2f} s, mart {gx[-1][3]:.2f} s, "
              f"Data Docs {gx[-1][4]:.2f} s; "
              f"GX floor {floor[-1]:.2f} s",
              flush=True)
        day += 2

    med = statistics.median
    print(f"\nslowest tasks of the last warehouse_etl run ({len(tasks)} tasks, "
          f"{sum(s for _, s in tasks):.1f} s summed):")
    for task, seconds in tasks[:12]:
        print(f"  {seconds:6.1f} s  {task}")
    # What the run's shape costs whatever dbt and the checks do: the watching tasks (a task per model and one per
    # model's tests, each only reading what the build reported), dag.test()'s loop between tasks, two GX floors and
    # the Data Docs step.
    watching = [s for t, s in tasks if t.startswith("dbt.") and t != f"dbt.{PRODUCER}"]
    loop = result.seconds - sum(s for _, s in tasks)
    docs = med(g[4] for g in gx)
    shape = sum(watching) + loop + 2 * med(floor) + docs
    print(f"the run's shape: {len(watching)} watching tasks {sum(watching):.1f} s, dag.test()'s loop {loop:.1f} s, "
          f"two GX floors {2 * med(floor):.1f} s, Data Docs {docs:.1f} s: {shape:.1f} s, so at least "
          f"{(med(bare) + shape) / med(bare):.2f}x the baseline with the model-level view")
    gx_s = [g[0] + g[1] for g in gx]
    sql_s = [g[2] + g[3] for g in gx]
    print(f"\nmedian of {rounds}: warehouse_etl through Airflow {med(airflow):.1f} s, baseline {med(bare):.1f} s "
          f"(dbt build + vacuum {med(dbt_s):.1f} s, SQL checks {med(check_s):.2f} s): "
          f"ratio {med(airflow) / med(bare):.2f} "
          f"(target <= 1.25)")
    print(f"GX gates (raw + mart, as warehouse_etl runs them) {med(gx_s):.1f} s, the same checks in SQL "
          f"{med(sql_s):.2f} s: ratio {med(gx_s) / med(sql_s):.1f} (target <= 2); raw {med(g[0] for g in gx):.1f} s "
          f"vs {med(g[2] for g in gx):.2f} s, mart {med(g[1] for g in gx):.1f} s vs {med(g[3] for g in gx):.2f} s; "
          f"then the run's Data Docs step {docs:.2f} s")
    print(f"GX floor (one expectation on one row, per gate) {med(floor):.2f} s: two gates' floor {2 * med(floor):.2f} s "
          f"= {2 * med(floor) / med(sql_s):.1f}x the SQL of every check; overhead per run through Airflow "
          f"{med(airflow) - med(bare):.1f} s")


if __name__ == "__main__":
    main()
