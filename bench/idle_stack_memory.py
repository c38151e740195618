"""Benchmark: the memory of the idle development stack (`make up`), and what switching off MLflow's job runner saves.

MLflow 3's server starts, besides its web workers, an asynchronous job runner (huey consumers, for GenAI judges and
trace rollups) that the bundle never uses; `services.ensure_mlflow` starts it with
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false. This script starts, on its own databases (suffix _bench) and ports:
  1. the MLflow server as MLflow starts it by default (job runner on): the baseline, in the same run;
  2. the MLflow server as the bundle starts it (job runner off);
  3. the whole `make up` stack (api-server, scheduler, dag-processor, triggerer, MLflow);
lets each sit idle (--settle seconds), then prints per service the processes, their summed resident memory (RSS)
and their summed proportional set size (PSS: shared pages divided among the processes that share them, so the
sum is what the service costs the machine). Everything it starts it stops. Usage:
    .venv/bin/python bench/idle_stack_memory.py [--settle 45]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ["MLSCALE_DB_SUFFIX"] = "_bench"
os.environ["MLSCALE_MLFLOW_PORT"] = "5078"
os.environ["MLSCALE_AIRFLOW_PORT"] = "8078"

import psutil  # noqa: E402

from mlscale.config import Settings  # noqa: E402
from mlscale.local import airflow_ui, services  # noqa: E402

MIB = 2**20


def group(settings: Settings, name: str) -> list[psutil.Process]:
    """The processes of the process group `start_background` started for `name`."""
    pgid = int((settings.run_dir / f"{name}.pid").read_text())
    return [p for p in psutil.process_iter() if _pgid(p) == pgid]


def _pgid(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return None


def measure(settings: Settings, name: str) -> tuple[int, float, float]:
    """(processes, summed RSS MiB, summed PSS MiB) of `name`'s process group."""
    rss = pss = count = 0
    for process in group(settings, name):
        try:
            info = process.memory_full_info()
        except psutil.NoSuchProcess:
            continue
        rss, pss, count = rss + info.rss, pss + info.pss, count + 1
    return count, rss / MIB, pss / MIB


def row(label: str, figures: tuple[int, float, float]) -> str:
    count, rss, pss = figures
    return f"| {label} | {count} | {rss:,.0f} MiB | {pss:,.0f} MiB |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=45, help="seconds each stack sits idle before it is measured")
    args = parser.parse_args()
    settings = Settings.from_env()
    mlflow = f"mlflow{settings.db_suffix}"
    from mlscale.local.setup import setup

    settings = setup(settings)  # databases, migrations, manifest (no MLflow measured yet)
    services.stop_background(settings, mlflow)
    rows = ["| service | processes | RSS (sum) | PSS (sum) |", "|---|---:|---:|---:|"]
    try:
        for label, value in (("MLflow, job runner on (MLflow's default)", "true"),
                             ("MLflow, job runner off (the bundle's)", None)):
            if value:
                os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = value
            else:
                os.environ.pop("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", None)
            services.ensure_mlflow(settings)
            time.sleep(args.settle)
            rows.append(row(label, measure(settings, mlflow)))
            services.stop_background(settings, mlflow)
            print(rows[-1], flush=True)
        airflow_ui.up(settings)
        time.sleep(args.settle)
        total = [0, 0.0, 0.0]
        for name in [*airflow_ui.AIRFLOW_PROCESSES, mlflow]:
            figures = measure(settings, name)
            total = [a + b for a, b in zip(total, figures)]
            rows.append(row(name.removesuffix(settings.db_suffix), figures))
        rows.append(row("**the idle `make up` stack**", tuple(total)))
    finally:
        airflow_ui.down(settings)
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
