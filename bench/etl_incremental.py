"""Benchmark: a daily warehouse_etl run costs about the same whatever the length of the history.

For each history length (1x = 300 days of a 3,000-customer shop, 10x = 3,000 days of a shop with
the same daily volume), it loads the history, builds the warehouse once, then times daily runs:
one new day lands, ingest_landing and warehouse_etl run through Airflow (dag.test). Prints the
median daily ETL time per history and their ratio (target: 10x history at most 1.5x the time), and
the same for the daily ingest_landing run (which must read only the new files, not the history).
Then times the KPI marts (business_report's `dbt build --select tag:kpi`), which are rebuilt in
full by every report run, on the same history (no predictions: the order-based marts).
Uses its own databases (suffix _bench) and a temporary landing folder. Usage:
    .venv/bin/python bench/etl_incremental.py [--scales 1 10] [--daily-runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["MLSCALE_DB_SUFFIX"] = "_bench"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

from mlscale.config import Settings  # noqa: E402

os.environ.update(Settings.from_env().service_env())


from mlscale import postgres
from mlscale.airflow import dagrun
from mlscale.business import reporting
from mlscale.local import services
from mlscale.local.datagen import ShopParams, generate  # noqa: E402
from mlscale.local.demo import output_to  # noqa: E402
from mlscale.specs import load_specs  # noqa: E402


def _reset(settings: Settings) -> None:
    with postgres.warehouse(settings, autocommit=True) as conn:
        for (schema,) in conn.execute("select nspname from pg_namespace where nspname not in ('public', "
                                      "'information_schema') and nspname not like 'pg\\_%'").fetchall():
            conn.execute(f'drop schema "{schema}" cascade')


def _run(settings: Settings, dag_id: str) -> float:
    return dagrun.run_dag(settings, dag_id).seconds


def bench(scale: int, daily_runs: int, quiet_log: Path) -> tuple[float, float, float]:
    landing = Path(tempfile.mkdtemp(prefix=f"mlscale-bench-{scale}x-"))
    os.environ["MLSCALE_LANDING_DIR"] = str(landing)
    settings = Settings.from_env()
    _reset(settings)
    params = ShopParams(customers=3000 * scale, days=300 * scale + daily_runs)
    t0 = time.monotonic()
    history = range(0, 300 * scale)
    stats = generate(params, landing, days=history, progress_every=0)
    print(f"[{scale}x] generated {len(history)} days, {stats.rows['orders']} orders in {time.monotonic() - t0:.0f}s", flush=True)
    with output_to(quiet_log):
        ingest_s = _run(settings, "ingest_landing")
        full_s = _run(settings, "warehouse_etl")
    print(f"[{scale}x] history: ingest {ingest_s:.0f}s, first (full) warehouse_etl {full_s:.0f}s", flush=True)
    daily, ingest = [], []
    for day in range(history.stop, history.stop + daily_runs):
        generate(params, landing, days=range(day, day + 1), progress_every=0)
        with output_to(quiet_log):
            ingest.append(_run(settings, "ingest_landing"))
            daily.append(_run(settings, "warehouse_etl"))
        print(f"[{scale}x] day {day}: daily ingest_landing {ingest[-1]:.1f}s, warehouse_etl {daily[-1]:.1f}s", flush=True)
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
    args = parser.parse_args()
    settings = Settings.from_env()
    postgres.ensure_databases(settings, [settings.warehouse_db, settings.airflow_db])
    services.migrate_airflow_db(settings)
    services.build_dbt_manifest(settings)
    quiet_log = settings.log_dir / "bench_etl_incremental.log"
    quiet_log.parent.mkdir(parents=True, exist_ok=True)
    print(f"task logs: {quiet_log}", flush=True)
    results = {scale: bench(scale, args.daily_runs, quiet_log) for scale in args.scales}
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
