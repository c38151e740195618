"""Benchmark: model quality on a real orders log, against the field's standard baselines measured in the same run.

Delivers the CDNOW log (23,570 customers, 69,659 purchases, 1997-01..1998-06; shipped by `lifetimes`) as the
orders feed only, runs the code of the pipeline's tasks (ingest, the ETL with its gates, train_churn_90d,
train_revenue_90d with the shipped specs) in databases of its own (suffix _real) against an MLflow server of
its own (port 5078, stopped at the end), and prints README's *Model quality on real data* table: on the newest
matured as-of date, each model against the recency rule and the textbook BTYD model, with a 95% paired
bootstrap interval of the difference, calibration before and after, and the training time. Usage:
    .venv/bin/python bench/real_data.py [--customer-share 1.0] [--keep]
--keep leaves its databases (warehouse_real, mlflow_real) for a look; the next run drops and rebuilds them.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ["MLSCALE_DB_SUFFIX"] = "_real"
os.environ["MLSCALE_MLFLOW_PORT"] = "5078"

from mlscale.config import Settings  # noqa: E402

os.environ.update(Settings.from_env().service_env())

import numpy as np  # noqa: E402

from mlscale import postgres
from mlscale.data import datasets
from mlscale.local import services
from mlscale.modeling import artifacts, features, judging, training
from mlscale.production import gates
from mlscale.modeling.baseline import measure_all  # noqa: E402
from mlscale.data.ingest import ingest_landing  # noqa: E402
from mlscale.specs import improvement, load_specs  # noqa: E402
from mlscale.data.warehouse import run_etl  # noqa: E402


def build(settings: Settings, share: float) -> dict:
    landing = Path(tempfile.mkdtemp(prefix="mlscale-bench-real-"))
    delivered = datasets.deliver_orders(datasets.cdnow(customer_share=share), landing)
    t0 = time.monotonic()
    ingest_landing(settings.dsn(settings.warehouse_db), landing)
    run_etl(settings, "bench-real-data")
    with postgres.warehouse(settings) as conn:
        rows = conn.execute("select count(*) from ml.customer_features").fetchone()[0]
    print(f"CDNOW: {delivered.customers} customers, {delivered.orders} orders in {delivered.files} daily files "
          f"({delivered.first_day}..{delivered.last_day}); ingest + ETL {time.monotonic() - t0:.0f}s, "
          f"{rows} feature rows", flush=True)
    return {"customers": delivered.customers, "orders": delivered.orders}


def judge(settings: Settings, spec, result: dict) -> dict:
    """The model and every baseline on the same test rows, with a paired bootstrap against the strongest BTYD, and the
    Staging gate's ceilings."""
    frame = features.labelled(settings, spec)
    split = judging.time_split(frame, spec.split.gap_days)
    test, y = split.test, split.test[spec.label].to_numpy()
    model, _ = artifacts.load_verified(settings, spec.name, result["version"]) if result["registered"] else (None, None)
    if model is None:
        import mlflow

        model = mlflow.sklearn.load_model(f"runs:/{result['run_id']}/model")
    scores = judging.predict(spec, model, test[spec.feature_names])
    baselines = {m.name: m for m in measure_all(spec, split.train, test)}
    btyd = next(m for name, m in baselines.items() if name.startswith("bg_nbd"))
    boot = gates.paired_bootstrap(spec, y, scores, btyd.scores, samples=1000, confidence=0.95)
    mae = {"model": float(np.mean(np.abs(y - scores))), **{n: float(np.mean(np.abs(y - m.scores)))
                                                             for n, m in baselines.items()}}
    ceilings = {metric: gates.ceiling_check(metric, y, scores, ceiling)
                for metric, ceiling in spec.promotion.staging.max_metrics.items()}  # as the Staging gate judges them
    return {"as_of": split.test_as_of.date(), "test_rows": len(test), "train_rows": len(split.train),
            "baselines": baselines, "btyd": btyd, "bootstrap": boot, "mae": mae, "ceilings": ceilings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customer-share", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the _real databases after the run")
    args = parser.parse_args()
    settings = Settings.from_env()
    postgres.drop_databases(settings, [settings.warehouse_db, settings.mlflow_db])
    postgres.ensure_databases(settings, [settings.warehouse_db, settings.mlflow_db])
    services.build_dbt_manifest(settings)
    services.ensure_mlflow(settings)
    try:
        shop = build(settings, args.customer_share)
        specs = load_specs()
        lines = []
        for name in ("churn_90d", "revenue_90d"):
            spec = specs[name]
            t0 = time.monotonic()
            result = training.train(settings, spec, tags={"mlscale.trigger": "bench-real-data"})
            seconds = time.monotonic() - t0
            j = judge(settings, spec, result)
            m, metric = result["metrics"], spec.primary_metric
            base = {n: b.metrics for n, b in j["baselines"].items()}
            boot = j["bootstrap"]
            print(f"\n{name}: test as-of {j['as_of']}, {j['test_rows']} customers; {j['train_rows']} training rows; "
                  f"trained in {seconds:.0f}s ({result['candidate']} {result['params']}); registered: "
                  f"{result['registered']} ({result['reason']})")
            for label, values in [("model", m), *base.items()]:
                print(f"  {label:<28} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
            print(f"  model against {j['btyd'].name}, {metric} improvement "
                  f"{improvement(metric, m[metric], j['btyd'].metrics[metric]):+.4f}, 95% paired bootstrap "
                  f"[{boot['low']:+.4f}, {boot['high']:+.4f}] (positive: the model is better)")
            for ceiling_metric, ceiling in spec.promotion.staging.max_metrics.items():
                print(f"  Staging ceiling: {j['ceilings'][ceiling_metric]['why']}")
            if spec.task == "regression":
                print("  MAE: " + ", ".join(f"{k} {v:.2f}" for k, v in j["mae"].items()))
            lines.append((name, j, m, base, seconds))
        churn, revenue = lines
        rec, bg = churn[3]["binned_mean_recency_days"], churn[3]["bg_nbd"]
        print("\n| dataset | customers | test as-of (customers) | recency rule | BG/NBD | model | model - BG/NBD "
              "(95% CI) | calibration error (BG/NBD, model) | revenue MAE (binned, BTYD, model) |")
        print("|---|---|---|---|---|---|---|---|---|")
        cb = churn[1]["bootstrap"]
        print(f"| CDNOW ({args.customer_share:.0%}) | {shop['customers']} | {churn[1]['as_of']} ({churn[1]['test_rows']}) "
              f"| {rec['roc_auc']:.3f} | {bg['roc_auc']:.3f} | {churn[2]['roc_auc']:.3f} | "
              f"{churn[2]['roc_auc'] - bg['roc_auc']:+.3f} ({cb['low']:+.3f}, {cb['high']:+.3f}) | "
              f"{bg['calibration_error']:.3f}, {churn[2]['calibration_error']:.3f} | "
              f"{revenue[1]['mae']['binned_mean_amount_90d']:.2f}, {revenue[1]['mae']['bg_nbd_gamma_gamma']:.2f}, "
              f"{revenue[1]['mae']['model']:.2f} |")
        print(f"training: churn_90d {churn[4]:.0f}s, revenue_90d {revenue[4]:.0f}s; peak memory of this process "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    finally:
        services.stop_background(settings, f"mlflow{settings.db_suffix}")
        if not args.keep:
            postgres.drop_databases(settings, [settings.warehouse_db, settings.mlflow_db])


if __name__ == "__main__":
    main()
