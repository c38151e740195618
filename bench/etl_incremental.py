"""Benchmark: a daily warehouse_etl run costs about the same whatever the length of the history.

For each history length (1x = 300 days of a 3,000-customer shop, 10x = 3,000 days of a shop with
the same daily volume), it loads the history, builds the warehouse once, then times daily runs:
one new day lands, ingest_landing and warehouse_etl run through Airflow (dag.test). Prints the
median daily ETL time per history and their ratio (target: 10x history at most 1.5x the time), and
the same for the daily ingest_landing run (which must read only the new files, not the history).
For every run it also prints how long dbt spent on ml.customer_features (dbt's result lines for its two parts in
the run's log: the longer, as they build at the same time), the daily runs' against the full build's: a daily
run relabels the open weeks instead of recomputing them, except on the day a new as-of date begins.
After the daily runs, ml.customer_features is checked against a full refresh of it (same checksum).
Then times the KPI marts (business_report's `dbt build --select tag:kpi`), which are rebuilt in
full by every report run, on the same history (no predictions: the order-based marts).
`--customers` sets the 1x shop's size (the daily runs at a shop size, e.g. 100000).
Uses its own databases (suffix _bench, dropped at the end) and a temporary landing folder (removed). Usage:
    .venv/bin/python bench/etl_incremental.py [--scales 1 10] [--daily-runs 3] [--customers 3000]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from psycopg import sql

os.environ["MLSCALE_DB_SUFFIX"] = "_bench"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from mlscale.config import Settings  # noqa: E402

os.environ.update(Settings.from_env().service_env())


from mlscale import postgres
from mlscale.airflow import dagrun
from mlscale.business import reporting
from mlscale.data.warehouse import dbt, drop_schemas
from mlscale.local import services
from mlscale.local.datagen import ShopParams, generate  # noqa: E402
from mlscale.local.demo import output_to  # noqa: E402
from mlscale.specs import load_specs  # noqa: E402


def _run(settings: Settings, dag_id: str) -> float:
    return dagrun.run_dag(settings, dag_id).seconds


# Every column but observed_last_day (the data horizon when the row was computed: a full refresh sets today's on
# every row), as tests/integration/test_warehouse_history.py compares them: a sum of 64-bit hashes of the rows' text,
# which PostgreSQL's parallel workers add up in any order. At 1M customers (27M rows) an md5 over the rows' JSON in
# key order did not finish in 9 minutes; the JSON alone costs 27 us a row, the row's text 2.7 us.
COLUMNS = ("select column_name from information_schema.columns where table_schema = 'ml'"
           " and table_name = 'customer_features' and column_name <> 'observed_last_day' order by ordinal_position")
CHECKSUM = "select count(*), sum(hashtextextended(row({})::text, 0)::numeric)::text from ml.customer_features"


def _checksum(settings: Settings) -> tuple[int, str]:
    with postgres.warehouse(settings) as conn:
        columns = sql.SQL(", ").join(sql.Identifier(name) for (name,) in conn.execute(COLUMNS))
        return conn.execute(sql.SQL(CHECKSUM).format(columns)).fetchone()


# dbt's result line for a part of the mart, which the watcher's producer task logs: "... OK created sql incremental
# model ml.customer_features_part_0 .... [INSERT 0 81806 in 2.03s]"
FEATURES_LINE = re.compile(r"OK created sql \w+ model ml\.customer_features_part_\d+ .*? in ([\d.]+)s\]")


def _etl(settings: Settings, quiet_log: Path) -> tuple[float, float, str]:
    """warehouse_etl through Airflow (its task logs to `quiet_log`): its seconds, dbt's seconds on
    ml.customer_features (its slower part, from the run's log), the newest as-of date."""
    offset = quiet_log.stat().st_size if quiet_log.exists() else 0
    with output_to(quiet_log):
        run = dagrun.run_dag(settings, "warehouse_etl")
    with quiet_log.open("rb") as fh:
        fh.seek(offset)
        found = FEATURES_LINE.findall(fh.read().decode(errors="replace"))
    if len(found) < 2:
        raise RuntimeError(f"no dbt result lines for ml.customer_features' parts in {quiet_log} (run {run.run_id})")
    with postgres.warehouse(settings) as conn:
        newest = conn.execute("select max(as_of_date)::text from ml.customer_features").fetchone()[0]
    return run.seconds, max(float(s) for s in found[-2:]), newest


def _equals_a_full_refresh(settings: Settings) -> str:
    """ml.customer_features as the daily runs left it against `dbt build --full-refresh` of it."""
    daily = _checksum(settings)
    dbt(settings, "build", "--full-refresh", "--select", "1+customer_features")  # the view and its two parts
    full = _checksum(settings)
    return (f"equals a full refresh ({daily[0]:,} rows, checksum {daily[1][:12]})" if daily == full else
            f"DIFFERS from a full refresh: {daily[0]:,} rows {daily[1][:12]} against {full[0]:,} rows {full[1][:12]}")


def bench(scale: int, daily_runs: int, customers: int, quiet_log: Path) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix=f"mlscale-bench-{scale}x-") as folder:  # the landing files, removed
        landing = Path(folder)
        os.environ["MLSCALE_LANDING_DIR"] = folder
        settings = Settings.from_env()
        drop_schemas(settings)
        params = ShopParams(customers=customers * scale, days=300 * scale + daily_runs)
        t0 = time.monotonic()
        history = range(0, 300 * scale)
        stats = generate(params, landing, days=history, progress_every=0)
        print(f"[{scale}x] generated {len(history)} days, {stats.rows['orders']} orders in {time.monotonic() - t0:.0f}s", flush=True)
        with output_to(quiet_log):
            ingest_s = _run(settings, "ingest_landing")
        full_s, full_features, newest = _etl(settings, quiet_log)
        print(f"[{scale}x] history: ingest {ingest_s:.0f}s, first (full) warehouse_etl {full_s:.0f}s"
              f" (ml.customer_features {full_features:.1f}s)", flush=True)
        daily, ingest = [], []
        for day in range(history.stop, history.stop + daily_runs):
            generate(params, landing, days=range(day, day + 1), progress_every=0)
            with output_to(quiet_log):
                ingest.append(_run(settings, "ingest_landing"))
            seconds, features, latest = _etl(settings, quiet_log)
            daily.append(seconds)
            print(f"[{scale}x] day {day}: daily ingest_landing {ingest[-1]:.1f}s, warehouse_etl {daily[-1]:.1f}s,"
                  f" ml.customer_features {features:.1f}s = {features / full_features:.2f} of the full build's"
                  f" ({'a new as-of date ' + latest + ' begins' if latest != newest else 'relabels the open weeks'})",
                  flush=True)
            newest = latest
        with output_to(quiet_log):
            refreshed = _equals_a_full_refresh(settings)
        print(f"[{scale}x] ml.customer_features after the daily runs {refreshed}", flush=True)
        t0 = time.monotonic()
        with output_to(quiet_log):
            reporting.build_kpis(settings, load_specs())
        kpi_s = time.monotonic() - t0
        print(f"[{scale}x] KPI marts (full rebuild) {kpi_s:.1f}s", flush=True)
        return statistics.median(daily), kpi_s, statistics.median(ingest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--daily-runs", type=int, default=3)
    parser.add_argument("--customers", type=int, default=3000, help="customers of the 1x shop")
    args = parser.parse_args()
    settings = Settings.from_env()
    postgres.ensure_databases(settings, [settings.warehouse_db, settings.airflow_db])
    services.migrate_airflow_db(settings)
    services.build_dbt_manifest(settings)
    quiet_log = settings.log_dir / "bench_etl_incremental.log"
    quiet_log.parent.mkdir(parents=True, exist_ok=True)
    print(f"task logs: {quiet_log}", flush=True)
    try:
        results = {scale: bench(scale, args.daily_runs, args.customers, quiet_log) for scale in args.scales}
    finally:  # a 100k warehouse is several GiB
        postgres.drop_databases(settings, [settings.warehouse_db, settings.airflow_db])
    for scale, (daily, kpi, ingest) in results.items():
        print(f"{scale:>3}x history: median daily warehouse_etl {daily:6.1f}s, daily ingest_landing {ingest:6.1f}s,"
              f" KPI marts {kpi:6.1f}s")
    base_daily, base_kpi, base_ingest = results[args.scales[0]]
    for scale in args.scales[1:]:
        daily, kpi, ingest = results[scale]
        print(f"ratio {scale}x/{args.scales[0]}x: daily warehouse_etl {daily / base_daily:.2f} (target <= 1.5),"
              f" daily ingest_landing {ingest / base_ingest:.2f}, KPI marts {kpi / base_kpi:.2f}")


if __name__ == "__main__":
    main()
