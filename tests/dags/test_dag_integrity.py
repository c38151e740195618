"""The bundle parses cleanly, without touching a database or the network, and every DAG is documented.

How fast it parses is measured by bench/dag_parse.py, not asserted here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlscale.config import Settings
from mlscale.sources import load_sources
from mlscale.specs import load_specs

HERE = Path(__file__).parent
DAGS = HERE.parents[1] / "dags"


@pytest.fixture(scope="module")
def parsed(manifest) -> dict:
    # Point every database URL at a port where nothing listens: a parse-time query would fail loudly.
    env = {**os.environ,
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://nobody@127.0.0.1:1/none",
           "MLSCALE_PG_DSN": "postgresql://nobody@127.0.0.1:1/none"}
    out = subprocess.run([sys.executable, str(HERE / "parse_bundle.py"), str(DAGS)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_import_errors(parsed):
    assert parsed["import_errors"] == {}


def test_no_database_or_network_access_at_parse_time(parsed):
    assert parsed["attempts"] == []


def test_every_spec_and_source_has_its_dags(parsed):
    expected = {"ingest_landing", "warehouse_etl", "business_report"} | {f"extract_{s}" for s in load_sources()}
    for name in load_specs():
        expected |= {f"monitor_{name}", f"train_{name}", f"promote_{name}", f"rollback_{name}", f"score_{name}"}
    assert set(parsed["dags"]) == expected


def test_assets_chain_monitoring_training_and_promotion(parsed):
    dags = parsed["dags"]
    for name in load_specs():
        assert dags[f"monitor_{name}"]["assets"] == ["ml.customer_features"]
        assert dags[f"train_{name}"]["assets"] == [f"{name}_retrain"]  # only monitoring (or a person) retrains
        assert dags[f"promote_{name}"]["assets"] == [f"{name}_candidate"]
        # a new Production version (promotion or rollback) is scored at once, not at the next daily run
        assert dags[f"score_{name}"]["assets"] == [f"{name}_production"]
        assert dags[f"promote_{name}"]["outlets"]["switch"] == [f"{name}_production"]
        assert dags[f"rollback_{name}"]["outlets"]["rollback"] == [f"{name}_production"]
    assert dags["warehouse_etl"]["assets"] == ["raw.orders"]
    assert dags["business_report"]["assets"] == ["ml.predictions"]  # after any scoring run


def test_every_dag_has_owner_tags_retries_and_docs(parsed):
    roles = {"data_engineer", "data_scientist", "production_engineer", "business_analyst"}
    for dag_id, dag in parsed["dags"].items():
        assert dag["owners"] and set(dag["owners"]) <= roles, (dag_id, dag["owners"])
        assert dag["tags"], dag_id
        assert dag["doc_md"], dag_id
        # Every task retries, but the watcher-mode producer: its retry never rebuilds (Cosmos skips it), so it fails
        # at once and its model tasks retry, each running dbt for its own model.
        never = {task for task, retries in dag["retries"].items() if retries < 1}
        assert never == ({"dbt.dbt_producer_watcher"} if dag_id == "warehouse_etl" else set()), dag_id
        assert dag["catchup"] is False, dag_id
        assert dag["retry_delays"] == [Settings.from_env().task_retry_delay], dag_id  # MLSCALE_TASK_RETRY_DELAY


def test_every_task_has_a_timeout(parsed):
    """No task waits forever on a hung server: MLSCALE_TASK_TIMEOUT, 2 hours by default. A task that waits for a
    person (a rollback's confirmation; the approval step of a spec with `approval: required`) waits a week, once."""
    timeouts = {(dag_id, task): seconds for dag_id, dag in parsed["dags"].items()
                for task, seconds in dag["task_timeouts"].items()}
    assert len(timeouts) > 30 and set(timeouts.values()) == {7200}
    people = {(dag_id, task): rule for dag_id, dag in parsed["dags"].items()
              for task, rule in dag["person_tasks"].items()}
    assert people == {(f"rollback_{name}", "confirm"): [0, 7 * 86400] for name in ("churn_90d", "revenue_90d")}


def test_dbt_models_render_as_tasks_with_their_tests(parsed, manifest):
    import json

    from mlscale.config import Settings

    nodes = json.loads(Settings.from_env().dbt_manifest.read_text())["nodes"].values()
    models = {n["name"] for n in nodes if n["resource_type"] == "model" and "kpi" not in n["tags"]}
    kpi_models = {n["name"] for n in nodes if n["resource_type"] == "model" and "kpi" in n["tags"]}
    tasks = parsed["dags"]["warehouse_etl"]["tasks"]
    tested = {d.split(".")[-1] for n in nodes if n["resource_type"] == "test" for d in n["depends_on"]["nodes"]}
    # Cosmos's watcher mode: one `dbt build` (the producer) runs them all; a task per model watches its run and one
    # its tests, so the model-level view stays in Airflow. A model without data tests is one task: the parts of
    # customer_features, whose checks are their contract's constraints (the mart's tests are on the view).
    assert models - tested == {"customer_features_part_0", "customer_features_part_1"}
    assert {f"dbt.{m}.run" for m in tested & models} | {f"dbt.{m}.test" for m in tested & models} \
        | {f"dbt.{m}_run" for m in models - tested} <= set(tasks)
    assert "dbt.dbt_producer_watcher" in tasks
    # The KPI marts read scoring's predictions: business_report builds them, warehouse_etl does not.
    assert {"kpi_daily", "kpi_model_value", "int_matured_predictions"} <= kpi_models
    assert not [t for t in tasks if any(m in t for m in kpi_models)]
    assert "dbt.customers_snapshot_snapshot" in tasks and "dbt.country_regions.seed" in tasks
    # A test on two models (relationships) counts in each model's test task: a detached test task would wait
    # forever in the watcher mode of Cosmos 1.15.1 (the producer reports tests per model only).
    assert not [t for t in tasks if t.startswith("dbt.relationships_")]
    # The watching tasks start once the one build has ended, in any state, and only after the checks before dbt.
    upstream = parsed["dags"]["warehouse_etl"]["upstream"]
    assert upstream["dbt.dbt_producer_watcher"] == ["checks_passed"]
    assert upstream["dbt_build_ended"] == ["dbt.dbt_producer_watcher"]
    first = [t for t in tasks if t.startswith("dbt.") and t != "dbt.dbt_producer_watcher"
             and not any(u.startswith("dbt.") for u in upstream[t])]
    assert first and all(upstream[t] == ["checks_passed", "dbt_build_ended"] for t in first), first
    assert {"claim_batch", "check_raw", "check_freshness", "check_features", "publish_batch"} <= set(tasks)
    # After the build and before anything reads the marts, the vacuum of what the build left dead.
    assert upstream["check_features"] == ["vacuum"] and upstream["publish_batch"] == ["check_features"]
    # The run's Data Docs pages once both gates are done, also when one failed.
    assert upstream["data_docs"] == ["check_features", "check_raw"]
    assert parsed["dags"]["warehouse_etl"]["trigger_rules"]["data_docs"] == "all_done"
    dbt_tasks = [t for t in tasks if t.startswith("dbt.")]
    last = [t for t in dbt_tasks if not any(t in upstream[d] for d in dbt_tasks)]
    assert last and sorted(upstream["vacuum"]) == sorted(last)
