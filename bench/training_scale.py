"""Benchmark: train_<model> on a million training rows within 10 minutes and 8 GiB on 2 cores.

Builds a real warehouse once (a 10,000-customer shop over 300 days: generator, COPY ingest, the ETL:
raw gate, dbt build, feature gate), then copies its labelled feature rows into bench.customer_features
with fresh customer ids until the training part of the time split holds the requested rows. Each size is trained in its own
process with the shipped spec (same search budget, baseline, plots, importance, MLflow logging,
registration) against its own MLflow server; the script prints seconds and the training process's
peak memory (everything it holds, libraries included) per size and the ratio of the largest to the smallest size.
Uses its own databases (suffix _bench) and MLflow port 5077. Usage:
    .venv/bin/python bench/training_scale.py [--model churn_90d] [--train-rows 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["MLSCALE_DB_SUFFIX"] = "_bench"
os.environ["MLSCALE_MLFLOW_PORT"] = "5077"

from mlscale.config import Settings  # noqa: E402

os.environ.update(Settings.from_env().service_env())


from mlscale import postgres
from mlscale.local import services
from mlscale.specs import load_specs  # noqa: E402

BENCH_TABLE = "bench.customer_features"
SHOP_CUSTOMERS, SHOP_DAYS = 10_000, 300


def build_base(settings: Settings) -> int:
    """The real mart of a generated shop (built once; reused while ml.customer_features exists)."""
    from mlscale.local.datagen import ShopParams, generate
    from mlscale.data.ingest import ingest_landing
    from mlscale.data.warehouse import run_etl

    with postgres.warehouse(settings) as conn:
        if conn.execute("select to_regclass('ml.customer_features')").fetchone()[0]:
            return conn.execute("select count(*) from ml.customer_features").fetchone()[0]
    landing = Path(tempfile.mkdtemp(prefix="mlscale-bench-train-"))
    t0 = time.monotonic()
    generate(ShopParams(customers=SHOP_CUSTOMERS, days=SHOP_DAYS), landing, progress_every=0)
    ingest_landing(settings.dsn(settings.warehouse_db), landing)
    run_etl(settings, "bench-training-scale")  # claim, raw gate, dbt build, feature gate, publish
    with postgres.warehouse(settings) as conn:
        rows = conn.execute("select count(*) from ml.customer_features").fetchone()[0]
    print(f"warehouse: {SHOP_CUSTOMERS} customers over {SHOP_DAYS} days, {rows} feature rows, "
          f"built in {time.monotonic() - t0:.0f}s", flush=True)
    return rows


def fill_bench_table(settings: Settings, spec, train_rows: int) -> dict:
    """bench.customer_features = copies of the labelled mart rows until the training split holds train_rows."""
    with postgres.warehouse(settings) as conn:
        test_as_of = conn.execute(f"select max(as_of_date) from ml.customer_features where {spec.label} is not null").fetchone()[0]
        per_copy = conn.execute(
            f"select count(*) from ml.customer_features where {spec.label} is not null"
            f" and as_of_date <= %s::date - {spec.split.gap_days}", (test_as_of,)).fetchone()[0]
        copies = -(-train_rows // per_copy)
        conn.execute("create schema if not exists bench")
        conn.execute(f"drop table if exists {BENCH_TABLE}")
        conn.execute(f"create table {BENCH_TABLE} as select * from ml.customer_features"
                     f" where {spec.label} is not null with no data")
        conn.execute(f"insert into {BENCH_TABLE} select (f.customer_id + c * 100000000)::bigint, f.as_of_date,"
                     f" {', '.join(_other_columns(conn))} from ml.customer_features f, generate_series(0, %s) c"
                     f" where {spec.label} is not null", (copies - 1,))
        conn.execute(f"analyze {BENCH_TABLE}")
        total = conn.execute(f"select count(*) from {BENCH_TABLE}").fetchone()[0]
    return {"copies": copies, "train_rows": per_copy * copies, "table_rows": total}


def _other_columns(conn) -> list[str]:
    cols = [r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_schema = 'ml'"
        " and table_name = 'customer_features' order by ordinal_position")]
    return [f"f.{c}" for c in cols if c not in ("customer_id", "as_of_date")]


def train_child(model: str) -> None:
    """Runs in its own process: train the spec on bench.customer_features; print a JSON line."""
    from mlscale.modeling import training

    spec = load_specs()[model].model_copy(update={"table": BENCH_TABLE})
    t0 = time.monotonic()
    result = training.train(Settings.from_env(), spec, tags={"mlscale.trigger": "bench"})
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"seconds": time.monotonic() - t0, "peak_mib": peak_mib, "metrics": result["metrics"],
                      "candidate": result["candidate"], "registered": result["registered"]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="churn_90d")
    parser.add_argument("--train-rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return train_child(args.model)
    settings = Settings.from_env()
    postgres.ensure_databases(settings, [settings.warehouse_db, settings.mlflow_db])
    services.build_dbt_manifest(settings)
    with services.mlflow_while(settings):  # stops the server if it started it
        spec = load_specs()[args.model]
        build_base(settings)
        log = settings.log_dir / "bench_training_scale.log"
        results = {}
        for rows in args.train_rows:
            table = fill_bench_table(settings, spec, rows)
            with log.open("a") as fh:
                out = subprocess.run([sys.executable, __file__, "--child", "--model", args.model], stdout=subprocess.PIPE,
                                     stderr=fh, text=True, env={**os.environ, **settings.service_env()})
            if out.returncode:
                sys.exit(f"training failed; see {log}")
            child = json.loads(out.stdout.strip().splitlines()[-1])
            results[rows] = {**table, **child}
            print(f"{table['train_rows']:>9} training rows ({table['table_rows']} in the table, {table['copies']} copies): "
                  f"{child['seconds']:6.1f}s, peak {child['peak_mib']:6.0f} MiB, {child['candidate']}, "
                  f"{spec.primary_metric} {child['metrics'][spec.primary_metric]:.4f}", flush=True)
        small, large = results[args.train_rows[0]], results[args.train_rows[-1]]
        print(f"ratio largest/smallest: rows {large['train_rows'] / small['train_rows']:.1f}x, "
              f"time {large['seconds'] / small['seconds']:.2f}x, peak memory {large['peak_mib'] / small['peak_mib']:.2f}x")
        print(f"largest: {large['seconds'] / 60:.1f} min (target < 10), {large['peak_mib'] / 1024:.2f} GiB (target < 8)")


if __name__ == "__main__":
    main()
