"""Run bundle DAGs through Airflow's own execution (`dag.test()` against the migrated metadata DB)."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from functools import cache

from mlscale.config import Settings

log = logging.getLogger(__name__)


class DagRunFailed(RuntimeError):
    """A DAG run ended in a state other than success."""


@dataclass(frozen=True)
class RunResult:
    dag_id: str
    run_id: str
    state: str
    seconds: float
    task_states: dict[str, str]


# dags folder -> DAG id -> its params as declared. Airflow resolves a run's params by merging the run's conf into
# the DAG's own Param objects, in place; in one process a conf would become the value every later run of the
# same (cached) DAG object starts from. So each run names every param: the declared value unless `conf` says.
_DECLARED_PARAMS: dict[str, dict[str, dict]] = {}


@cache
def dag_bag(dags_folder: str):
    """Parse the bundle once per process."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_folder)
    if bag.import_errors:
        raise DagRunFailed(f"the bundle has import errors: {bag.import_errors}")
    _DECLARED_PARAMS[dags_folder] = {dag_id: copy.deepcopy(dag.params.dump()) for dag_id, dag in bag.dags.items()}
    return bag


def run_dag(settings: Settings, dag_id: str, conf: dict | None = None, check: bool = True) -> RunResult:
    """Run `dag_id` once with `dag.test()`; raise DagRunFailed when `check` and the run did not succeed. `conf`
    sets params for this run only (the others keep their declared values)."""
    folder = str(settings.root / "dags")
    dag = dag_bag(folder).get_dag(dag_id)
    if dag is None:
        raise KeyError(f"no DAG {dag_id!r} in {folder}")
    t0 = time.monotonic()
    dr = dag.test(run_conf={**_DECLARED_PARAMS[folder].get(dag_id, {}), **(conf or {})})
    seconds = time.monotonic() - t0
    states = {ti.task_id: str(ti.state) for ti in dr.get_task_instances()}
    result = RunResult(dag_id, dr.run_id, str(dr.state), seconds, states)
    log.info("%s finished %s in %.1fs: %s", dag_id, dr.state, seconds, states)
    if check and result.state != "success":
        failed = [t for t, s in states.items() if s not in ("success", "skipped")]
        raise DagRunFailed(f"{dag_id} run {dr.run_id} ended {dr.state}; tasks not successful: {failed}")
    return result
