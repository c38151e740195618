"""MLflow runs on the settings' tracking server, for the fluent API (`mlflow.log_*`) that training, monitoring and
the business report write with.

MLflow's fluent API reads a process-wide tracking URI (and exports it as MLFLOW_TRACKING_URI to subprocesses).
`run` points it at the settings' server for the run only and restores what was there before, so nothing a
process does afterwards (the demo after model CI, another namespace's tests) writes to that server by accident.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from mlscale.config import Settings


@contextmanager
def run(settings: Settings, experiment: str, run_name: str) -> Iterator["mlflow.ActiveRun"]:  # noqa: F821
    """An MLflow run in `experiment` (created if missing) on the settings' server."""
    import mlflow

    os.environ.update(settings.mlflow_http_env())  # request timeout and retries, read on every request
    before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(settings.mlflow_uri)
    try:
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=run_name) as active:
            yield active
    finally:
        mlflow.set_tracking_uri(before)
