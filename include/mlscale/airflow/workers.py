"""`[core] hostname_callable` of the Celery workers `make up EXECUTOR=celery` starts on one machine."""

from __future__ import annotations

import os


def hostname() -> str:
    """Airflow's own host name, then the worker's (MLSCALE_WORKER_NAME): the task instances say which of the
    workers on this machine ran them."""
    from airflow.utils.net import getfqdn  # Airflow's default hostname_callable

    return f"{getfqdn()}-{os.environ['MLSCALE_WORKER_NAME']}"
