"""Airflow wiring shared by the DAG files: Asset URIs naming the real tables, default_args, failure logging.

Imported at DAG parse time: reads only the environment, never a database.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

from airflow.sdk import Asset

from mlscale.config import settings

log = logging.getLogger(__name__)

START_DATE = datetime(2026, 1, 1)


def table_asset(schema: str, table: str) -> Asset:
    """Asset for a warehouse table: postgres://host:port/<warehouse db>/<schema>/<table>."""
    s = settings()
    p = s.conn_params(s.warehouse_db)
    return Asset(name=f"{schema}.{table}", uri=f"postgres://{p['host']}:{p['port']}/{s.warehouse_db}/{schema}/{table}")


def candidate_asset(model: str) -> Asset:
    """A new registered version of `model` awaits promotion (event extra: model, version, run_id)."""
    return Asset(name=f"{model}_candidate", uri=f"mlflow://registry/{model}/candidate")


def retrain_asset(model: str) -> Asset:
    """monitor_<model> asks for a new version of `model` (event extra: reason, production_version, as_of_date)."""
    return Asset(name=f"{model}_retrain", uri=f"mlflow://registry/{model}/retrain")


def production_asset(model: str) -> Asset:
    """Another version of `model` serves in Production (a promotion's switch or a rollback): score it now."""
    return Asset(name=f"{model}_production", uri=f"mlflow://registry/{model}/production")


RAW_ORDERS = table_asset("raw", "orders")
RAW_CUSTOMERS = table_asset("raw", "customers")
CUSTOMER_FEATURES = table_asset("ml", "customer_features")
PREDICTIONS = table_asset("ml", "predictions")


def log_failure(context) -> None:
    """on_failure_callback: one greppable line naming the DAG, task, run and error."""
    ti = context.get("task_instance")
    log.error("mlscale task failed: dag=%s task=%s run=%s error=%s", ti.dag_id if ti else "?",
              ti.task_id if ti else "?", context.get("run_id"), context.get("exception"))


@contextlib.contextmanager
def failing_on(*errors: type[Exception]):
    """Inside a task: expected errors (bad input, nothing to do, refused artifact) fail it without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except errors as exc:
        raise AirflowFailException(str(exc)) from exc


def dag_args(owner: str, retries: int = 2, **own) -> dict:
    """@dag arguments every mlscale DAG shares (start date, no catchup, one run at a time, the owner's
    default_args), with the DAG's own (dag_id, schedule, params, tags, doc_md)."""
    return {"start_date": START_DATE, "catchup": False, "max_active_runs": 1,
            "default_args": default_args(owner, retries), **own}


def default_args(owner: str, retries: int = 2) -> dict:
    """default_args for an mlscale DAG owned by `owner` (the role)."""
    return {
        "owner": owner,
        "retries": retries,
        "retry_delay": timedelta(seconds=settings().task_retry_delay),  # MLSCALE_TASK_RETRY_DELAY, 60 s
        # no task runs forever on a hung server (MLSCALE_TASK_TIMEOUT; the approval step has its own)
        "execution_timeout": timedelta(seconds=settings().task_timeout),
        "on_failure_callback": log_failure,
    }
