"""`make up`'s Airflow runs the chain by itself: the bundle's DAGs are not left paused."""

import subprocess

import pytest

from mlscale import postgres
from mlscale.local import airflow_ui, services
from mlscale.specs import load_specs

pytestmark = pytest.mark.integration


def test_make_up_unpauses_the_bundles_dags(stack):
    env = airflow_ui.ui_env(stack)
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"  # what the dag-processor finds later
    # The DAG rows as `make demo` (dag.test) or an earlier parse leaves them: Airflow's default, paused.
    subprocess.run([str(services.BIN / "airflow"), "dags", "reserialize"], check=True, capture_output=True,
                   env={**env, "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True"})
    with postgres.database(stack, stack.airflow_db) as conn:
        conn.execute("update dag set is_paused = true")

    airflow_ui.unpause_bundle(env)

    with postgres.database(stack, stack.airflow_db) as conn:
        dags = dict(conn.execute("select dag_id, is_paused from dag").fetchall())
    chain = {"ingest_landing", "warehouse_etl", "business_report",
             *(f"{step}_{name}" for name in load_specs() for step in ("monitor", "train", "promote", "score"))}
    assert chain <= set(dags)
    assert [d for d, paused in dags.items() if paused] == []
