"""The end-to-end demo: generate a shop, run every DAG through Airflow in order, print what happened."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path


from mlscale import ops, postgres, registry
from mlscale.airflow import dagrun
from mlscale.business import reporting
from mlscale.data import quality
from mlscale.local import datagen
from mlscale.config import Settings
from mlscale.postgres import table_exists
from mlscale.specs import load_specs

log = logging.getLogger(__name__)



def pipeline() -> list[str]:
    """The DAGs of one pass, in order: ingest, ETL, monitor, train, promote and score each model spec, the report."""
    return ["ingest_landing", "warehouse_etl",
            *(f"{step}_{name}" for name in load_specs() for step in ("monitor", "train", "promote", "score")),
            "business_report"]


# What the scheduler does with asset events, for runs one after another: a DAG whose asset was not
# updated does not run. <step>: (the task that updates the asset, the steps it triggers).
TRIGGERS = {"monitor": ("request_retrain", ("train", "promote")), "train": ("train", ("promote",))}


@dataclass
class StageTime:
    name: str
    seconds: float
    state: str


def ensure_landing(settings: Settings, params: datagen.ShopParams) -> str:
    """Generate the shop under landing/ unless files are already there."""
    if any(settings.landing_dir.glob("orders/dt=*/*.csv")):
        return f"re-using the landing files under {settings.landing_dir}"
    stats = datagen.generate(params, settings.landing_dir)
    files = ", ".join(f"{feed} {n}" for feed, n in stats.files.items())
    return (f"generated {params.customers} customers and {stats.rows['orders']} orders over {params.days} days "
            f"under {settings.landing_dir} (files per feed: {files})")


@contextlib.contextmanager
def output_to(logfile: Path):
    """Send everything written to stdout/stderr (Airflow task logs, dbt, MLflow) to `logfile`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with logfile.open("ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_pipeline(settings: Settings, dag_ids: list[str] | None = None) -> list[StageTime]:
    """Run the DAGs one after another through Airflow, task logs to a file; stop at the first that fails."""
    logfile = settings.log_dir / "demo_dag_runs.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    print(f"  running the DAGs through Airflow (task logs: {logfile})", flush=True)
    times, not_triggered = [], {}
    for dag_id in dag_ids or pipeline():
        print(f"  {dag_id:<28}", end=" ", flush=True)
        if dag_id in not_triggered:
            print(f"not triggered: {not_triggered[dag_id]}", flush=True)
            times.append(StageTime(dag_id, 0.0, "not triggered"))
            continue
        try:
            with output_to(logfile):
                result = dagrun.run_dag(settings, dag_id)
        except dagrun.DagRunFailed:
            print(f"FAILED (see {logfile})", flush=True)
            raise
        print(f"{result.state} in {result.seconds:.1f}s", flush=True)
        times.append(StageTime(dag_id, result.seconds, result.state))
        step, _, model = dag_id.partition("_")
        if step in TRIGGERS and result.task_states.get(TRIGGERS[step][0]) != "success":
            task, downstream = TRIGGERS[step]
            why = f"{dag_id}.{task} was {result.task_states.get(task)}"
            not_triggered.update({f"{d}_{model}": why for d in downstream if f"{d}_{model}" not in not_triggered})
    return times


def summary(settings: Settings, times: list[StageTime], landing_note: str) -> str:
    """A report a person can read: rows, checks, metrics, registry, predictions, where to look."""
    lines = ["", "=" * 72, "mlscale demo: summary", "=" * 72, f"data: {landing_note}", ""]
    with postgres.warehouse(settings) as conn:
        lines.append("rows loaded per feed (ledger ops.ingest_files; quarantine ops.quarantine):")
        for r in ops.ingest_summary(conn).itertuples():
            lines.append(f"  {r.feed:<16} {r.rows_loaded:>9} rows from {r.files} files, {r.quarantined} quarantined, "
                         f"{r.rejected} files rejected")
        lines += ["", "quality checks, each suite's newest run (ops.dq_results):"]
        for r in ops.quality_runs(conn, runs=1).itertuples():
            lines.append(f"  {r.suite:<24} {r.passed} passed, {r.failed} failed ({r.failed_critical} critical)")
        lines.append(f"  feature mart ml.customer_features: "
                     f"{conn.execute('select count(*) from ml.customer_features').fetchone()[0]} rows")
        preds = conn.execute(
            "select model, model_version, as_of_date, count(*), round(avg(score)::numeric, 3) from ml.predictions"
            " group by 1, 2, 3 order by as_of_date desc, model limit 5"
        ).fetchall()
        shadow = conn.execute(
            "select model, model_version, as_of_date, count(*) from ml.shadow_predictions group by 1, 2, 3"
            " order by as_of_date desc, model limit 5"
        ).fetchall() if table_exists(conn, "ml.shadow_predictions") else []
        monitored = ops.latest_monitoring_decisions(conn)
        decisions = ops.promotions(conn, limit=4)
    client = registry.client(settings)
    for name in load_specs():
        lines += ["", f"model {name}: registry (stage, aliases) and test metrics of each version:"]
        for v in registry.registry_state(settings, name):
            run = client.get_run(client.get_model_version(name, v["version"]).run_id)
            metrics = ", ".join(f"{k.removeprefix('test_')}={val:.3f}" for k, val in sorted(run.data.metrics.items())
                                if k.startswith("test_"))
            lines.append(f"  v{v['version']:<3} {v['stage']:<10} aliases={','.join(v['aliases']) or '-':<28} {metrics}")
    lines += ["", "latest monitoring decision per model (ops.model_monitoring; MLflow experiments <model>_monitoring):"]
    lines += [f"  {r.model} (Production v{r.model_version or '-'}) as-of {r.as_of_date}: {r.subject}: {r.detail[:160]}"
              for r in monitored.itertuples()] or ["  none"]
    lines += ["", "latest promotion decisions (ops.model_promotions):"]
    lines += [f"  {r.model} v{r.to_version} {r.decision} -> {r.stage}: {r.reason[:160]}"
              for r in decisions.itertuples()] or ["  none"]
    lines += ["", "predictions written (ml.predictions):"]
    lines += [f"  {m} v{v} as-of {d}: {n} customers scored, mean score {avg}" for m, v, d, n, avg in preds] or ["  none"]
    lines += [f"  shadow (ml.shadow_predictions): {m} v{v} as-of {d}: {n} customers" for m, v, d, n in shadow]
    lines += ["", "time per stage:"]
    lines += [f"  {t.name:<28} {t.seconds:7.1f}s  {t.state}" for t in times]
    lines += [
        "",
        "where to look:",
        f"  MLflow UI           {registry.ui_url(settings.mlflow_uri, 'models')}  (registered models: "
        f"{', '.join(load_specs())}; the link opens MLflow's Model training view)",
        f"  warehouse           psql \"{settings.dsn(settings.warehouse_db)}\"  (schemas raw, staging, intermediate, core, ml, kpi, ops)",
        f"  landing files       {settings.landing_dir}",
        f"  data quality        the business report's Data quality section (offline); GX Data Docs (their scripts "
        f"come from public CDNs) {quality.docs_index(settings)}",
        f"  business report     {settings.reports_dir / reporting.FILENAME}  (also in the Airflow UI: Browse > ML models)",
        f"  service logs        {settings.log_dir}",
        "  Airflow UI          make up  (then http://127.0.0.1:8080)",
        "=" * 72,
    ]
    return "\n".join(lines)


def demo(settings: Settings, params: datagen.ShopParams) -> str:
    """Generate data (first time), run the pipeline through Airflow, return the summary."""
    t0 = time.monotonic()
    note = ensure_landing(settings, params)
    gen_time = StageTime("generate landing files", time.monotonic() - t0, "success")
    print(f"  {note}", flush=True)
    times = [gen_time, *run_pipeline(settings)]
    return summary(settings, times, note)
