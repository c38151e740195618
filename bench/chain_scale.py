"""Benchmark: the whole chain, landing files to a Production model and its predictions, at several shop sizes.

For each number of customers (300 days of history), on databases of its own (suffix _bench_chain, emptied first)
and its own MLflow server (port 5078), each stage runs as the CLI runs it, in a child process: `generate` (the
landing files), `ingest`, `etl` (raw gate, dbt build, feature gate, publish), `train churn_90d` (the shipped
spec), `promote churn_90d`, `score churn_90d`. For each stage it prints the wall time and the peak resident memory
of the stage's processes (the child and the children it waited for, dbt included; PostgreSQL's server processes
are not counted), then writes the table to docs/chain_scale.csv (sizes not rerun keep their rows) and a plot to
docs/chain_scale.png.
A stage that fails ends that size (its log is printed) and the next size runs. Everything it starts it stops,
and it drops its databases at the end unless --keep.
Usage:
    .venv/bin/python bench/chain_scale.py [--customers 10000 100000 1000000] [--days 300]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["MLSCALE_DB_SUFFIX"] = "_bench_chain"
os.environ["MLSCALE_MLFLOW_PORT"] = "5078"

from mlscale.config import Settings  # noqa: E402

os.environ.update(Settings.from_env().service_env())

from mlscale import postgres  # noqa: E402
from mlscale.local import services  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = "churn_90d"
STAGES = ["generate", "ingest", "etl", "train", "promote", "score"]
TARGET_MINUTES = 30.0  # issue 21: landing files to a Production model's predictions at 1M customers


def run_stage(args: list[str], env: dict[str, str], log: Path, stdout=None) -> tuple[float, float, int]:
    """(seconds, peak MiB of the process tree it waited for, exit status) of one CLI command; its output goes to
    `log` (its stdout to `stdout` when given)."""
    with log.open("ab") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen([str(services.BIN / "mlscale"), *args], stdout=stdout or out,
                                stderr=out if stdout else subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - t0, usage.ru_maxrss / 1024, proc.returncode


def run_size(settings: Settings, customers: int, days: int, workdir: Path) -> list[dict]:
    """Every stage of the chain on a new shop of `customers`; the rows of the results table."""
    postgres.drop_databases(settings, [settings.warehouse_db, settings.mlflow_db])
    postgres.ensure_databases(settings, [settings.warehouse_db, settings.mlflow_db])
    services.stop_background(settings, f"mlflow{settings.db_suffix}")
    shutil.rmtree(settings.mlflow_artifacts_dir, ignore_errors=True)
    services.ensure_mlflow(settings)
    landing = workdir / f"landing-{customers}"
    env = {**os.environ, **settings.service_env(), "MLSCALE_LANDING_DIR": str(landing)}
    log = settings.log_dir / f"bench_chain_scale_{customers}.log"
    log.unlink(missing_ok=True)
    commands = {"generate": ["generate", "--customers", str(customers), "--days", str(days)],
                "ingest": ["ingest"], "etl": ["etl"], "train": ["train", MODEL], "promote": ["promote", MODEL],
                "score": ["score", MODEL]}
    rows = []
    for stage in STAGES:
        seconds, peak, status = run_stage(commands[stage], env, log)
        rows.append({"customers": customers, "stage": stage, "seconds": round(seconds, 1),
                     "peak_mib": round(peak), "ok": status == 0})
        print(f"{customers:>9,} customers  {stage:<8} {seconds:8.1f} s  {peak:8.0f} MiB  "
              f"{'ok' if status == 0 else f'FAILED (exit {status})'}", flush=True)
        if status != 0:
            print(log.read_text(errors="replace")[-3000:])
            break
    with postgres.warehouse(settings) as conn:
        orders = conn.execute("select count(*) from raw.orders").fetchone()[0]
        scored = conn.execute("select count(*) from ml.predictions").fetchone()[0] if postgres.table_exists(
            conn, "ml.predictions") else 0
    # The target's span starts with the files landed: generating them (the test shop) is reported beside it.
    pipeline = sum(r["seconds"] for r in rows if r["stage"] != "generate") / 60
    print(f"{customers:>9,} customers  {orders:,} orders loaded, {scored:,} predictions; landed files to predictions "
          f"{pipeline:.1f} min (target {TARGET_MINUTES:.0f}, ratio {pipeline / TARGET_MINUTES:.2f}), "
          f"{sum(r['seconds'] for r in rows) / 60:.1f} min with generating them, "
          f"peak {max(r['peak_mib'] for r in rows) / 1024:.2f} GiB ({max(rows, key=lambda r: r['peak_mib'])['stage']})",
          flush=True)
    shutil.rmtree(landing, ignore_errors=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["customers"] for r in rows})
    fig, (time_ax, memory_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stage in STAGES:
        points = [(r["customers"], r["seconds"], r["peak_mib"]) for r in rows if r["stage"] == stage and r["ok"]]
        if points:
            xs, secs, mibs = zip(*points)
            time_ax.plot(xs, secs, marker="o", label=stage)
            memory_ax.plot(xs, [m / 1024 for m in mibs], marker="o", label=stage)
    for ax, label in ((time_ax, "seconds"), (memory_ax, "peak memory (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.set_xlabel("customers (300 days of history)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    memory_ax.axhline(24, color="grey", linestyle="--", linewidth=1)
    memory_ax.text(sizes[0], 24, " this machine's memory (24 GiB)", va="bottom", fontsize=8)
    time_ax.legend(fontsize=8)
    fig.suptitle("The chain per stage on 2 cores: landing files to a Production model's predictions")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--days", type=int, default=300)
    parser.add_argument("--csv", type=Path, default=ROOT / "docs" / "chain_scale.csv")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "chain_scale.png")
    parser.add_argument("--keep", action="store_true", help="keep the last size's databases (dropped by default)")
    args = parser.parse_args()
    settings = Settings.from_env()
    services.build_dbt_manifest(settings)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mlscale-chain-") as workdir:
        try:
            for customers in args.customers:
                rows += run_size(settings, customers, args.days, Path(workdir))
        finally:
            services.stop_background(settings, f"mlflow{settings.db_suffix}")
            if not args.keep:
                postgres.drop_databases(settings, [settings.warehouse_db, settings.mlflow_db])
    if args.csv.exists():  # the sizes not rerun keep the rows of their last run
        with args.csv.open(newline="") as fh:
            kept = [{**r, "customers": int(r["customers"]), "seconds": float(r["seconds"]), "peak_mib": int(r["peak_mib"]),
                     "ok": r["ok"] == "True"} for r in csv.DictReader(fh) if int(r["customers"]) not in args.customers]
        rows = sorted(kept + rows, key=lambda r: (r["customers"], STAGES.index(r["stage"])))
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.plot)
    print(f"table: {args.csv}\nplot:  {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
