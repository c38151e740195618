"""Benchmark: training on a sample of customers (split.max_train_rows) against training on every row.

On one real warehouse, `mlscale train MODEL` runs once per cap, each in a child process with the shipped spec but
for split.max_train_rows (0: unset, every training row). The test rows (the newest matured as-of date) are never
sampled, so every run is judged on the same rows; the script prints, per cap, the training rows, seconds, peak
resident memory of the training process, and the test metrics of the model and of the strongest baseline.
The warehouse is bench/chain_scale.py's (suffix _bench_chain, MLflow port 5078): the one `chain_scale.py --keep`
left when it holds ml.customer_features, else a shop of --customers built there (generate, ingest, etl). It
stops the MLflow server it started and keeps the databases (drop them with `--drop`).
Usage:
    .venv/bin/python bench/training_sample.py [--customers 100000] [--max-train-rows 0 250000 1000000] [--drop]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from chain_scale import run_stage  # noqa: E402  (sets the _bench_chain databases and MLflow port first)
from mlscale import postgres  # noqa: E402
from mlscale.config import Settings  # noqa: E402
from mlscale.local import services  # noqa: E402
from mlscale.specs import SPECS_DIR, load_specs  # noqa: E402


def built(settings: Settings) -> bool:
    with postgres.warehouse(settings) as conn:
        return conn.execute("select to_regclass('ml.customer_features') is not null").fetchone()[0]


def build_shop(settings: Settings, customers: int, days: int, log: Path) -> None:
    postgres.drop_databases(settings, [settings.warehouse_db])
    postgres.ensure_databases(settings, [settings.warehouse_db])
    with tempfile.TemporaryDirectory(prefix="mlscale-sample-") as landing:
        env = {**os.environ, **settings.service_env(), "MLSCALE_LANDING_DIR": landing}
        for stage in (["generate", "--customers", str(customers), "--days", str(days)], ["ingest"], ["etl"]):
            seconds, _, status = run_stage(stage, env, log)
            print(f"shop of {customers:,} customers: {stage[0]} {seconds:.0f} s", flush=True)
            if status:
                sys.exit(f"{stage[0]} failed; see {log}")


def train(settings: Settings, model: str, cap: int, log: Path) -> dict:
    """One `mlscale train` with split.max_train_rows = cap (0: unset); its result and its time and peak memory."""
    with tempfile.TemporaryDirectory(prefix="mlscale-specs-") as specs, \
            tempfile.TemporaryDirectory(prefix="mlscale-result-") as result_dir:
        for path in SPECS_DIR.glob("*.yml"):
            shutil.copy(path, specs)
        spec = yaml.safe_load((SPECS_DIR / f"{model}.yml").read_text())
        spec["split"].pop("max_train_rows", None)
        if cap:
            spec["split"]["max_train_rows"] = cap
        (Path(specs) / f"{model}.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
        out = Path(result_dir) / "result.json"
        env = {**os.environ, **settings.service_env(), "MLSCALE_SPECS_DIR": specs}
        with out.open("w") as fh:  # the CLI prints the result as JSON on stdout, its log on stderr
            seconds, peak, status = run_stage(["train", model], env, log, stdout=fh)
        if status:
            sys.exit(f"training with max_train_rows {cap or 'unset'} failed; see {log}")
        text = out.read_text()  # MLflow prints its "View run ... at" lines before the result
        result = json.loads(text[text.index("{\n"):])
    return {"cap": cap, "seconds": seconds, "peak_mib": peak, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="churn_90d")
    parser.add_argument("--customers", type=int, default=100_000, help="shop size when no warehouse is kept")
    parser.add_argument("--days", type=int, default=300)
    parser.add_argument("--max-train-rows", type=int, nargs="+", default=[0, 250_000, 1_000_000])
    parser.add_argument("--drop", action="store_true", help="drop the databases at the end")
    args = parser.parse_args()
    settings = Settings.from_env()
    postgres.ensure_databases(settings, [settings.warehouse_db, settings.mlflow_db])
    log = settings.log_dir / "bench_training_sample.log"
    log.unlink(missing_ok=True)
    try:
        with services.mlflow_while(settings):
            if built(settings):
                print("using the warehouse chain_scale.py kept", flush=True)
            else:
                build_shop(settings, args.customers, args.days, log)
            metric = load_specs()[args.model].primary_metric
            for cap in args.max_train_rows:
                r = train(settings, args.model, cap, log)
                metrics = "  ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
                print(f"max_train_rows {cap or 'unset':>9}: {r['train_rows']:>9,} training rows "
                      f"(share {r['train_sample_share']:.3f}), {r['test_rows']:,} test rows; {r['seconds']:6.1f} s, "
                      f"peak {r['peak_mib'] / 1024:5.2f} GiB; {r['candidate']}; {metrics}; strongest baseline "
                      f"{r['baseline']} {metric} {r['baseline_metrics'][metric]:.4f}", flush=True)
    finally:
        if args.drop:
            postgres.drop_databases(settings, [settings.warehouse_db, settings.mlflow_db])


if __name__ == "__main__":
    main()
