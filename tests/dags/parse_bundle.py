"""Parse the bundle in a fresh process with every way out to a database or the network blocked.

Prints one JSON line: import errors, DAG ids, parse seconds, and every connection attempt.
Run by tests/dags/test_dag_integrity.py; also handy by hand: `python tests/dags/parse_bundle.py`.
"""

import json
import os
import socket
import sys
import time

attempts: list[str] = []


def _blocked(name):
    def refuse(*args, **kwargs):
        attempts.append(f"{name}{args[1:2] or args[:1]}")
        raise ConnectionRefusedError(f"{name} at parse time")

    return refuse


socket.socket.connect = _blocked("socket.connect")
socket.create_connection = _blocked("socket.create_connection")
import psycopg  # noqa: E402
import psycopg2  # noqa: E402

psycopg.connect = _blocked("psycopg.connect")
psycopg2.connect = _blocked("psycopg2.connect")

from airflow.dag_processing.dagbag import DagBag  # noqa: E402



def _asks_a_person(task) -> bool:
    from airflow.providers.standard.operators.hitl import HITLOperator

    return isinstance(task, HITLOperator)


t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1] if len(sys.argv) > 1 else os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
seconds = time.perf_counter() - t0
dags = {
    dag_id: {
        "owners": sorted({t.owner for t in dag.tasks}),
        "tags": sorted(dag.tags),
        "doc_md": bool(dag.doc_md and len(dag.doc_md) > 100),
        # Tasks that wait for a person (Airflow's HITL operators) are not retried and wait a week: apart.
        "retries": {t.task_id: t.retries for t in dag.tasks if not _asks_a_person(t)},
        "retry_delays": sorted({t.retry_delay.total_seconds() for t in dag.tasks if not _asks_a_person(t)}),
        "task_timeouts": {t.task_id: t.execution_timeout.total_seconds() if t.execution_timeout else None
                          for t in dag.tasks if not _asks_a_person(t)},
        "person_tasks": {t.task_id: (t.retries, t.execution_timeout.total_seconds()) for t in dag.tasks
                         if _asks_a_person(t)},
        "catchup": dag.catchup,
        "tasks": sorted(t.task_id for t in dag.tasks),
        "outlets": {t.task_id: sorted(a.name for a in t.outlets) for t in dag.tasks if t.outlets},
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "trigger_rules": {t.task_id: t.trigger_rule.value for t in dag.tasks if t.trigger_rule != "all_success"},
        # An asset schedule is AssetAll(assets...): the names of the assets it waits for.
        "assets": sorted(a.name for a in getattr(getattr(dag.timetable, "asset_condition", None), "objects", ())),
    }
    for dag_id, dag in bag.dags.items()
}
print(json.dumps({"import_errors": bag.import_errors, "dags": dags, "seconds": seconds, "attempts": attempts}))
