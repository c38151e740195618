"""A retrain request is never lost to a failure after the checks (RELIABILITY.md): monitoring records its
decision only once the request (the `<model>_retrain` asset event) is out, so a try that fails before (MLflow
refusing the monitoring run) leaves no decision behind, and its retry requests the retrain."""

import pytest

from mlscale import ops, postgres, registry
from mlscale.airflow import dagrun
from mlscale.production import monitoring
from tests.e2e.conftest import MODEL, SPEC, shop  # noqa: F401  (the e2e shop fixture, copied from its template)
from tests.helpers import drop_registered_model, query
from tests.reliability.conftest import register_tiny_version

pytestmark = pytest.mark.reliability


def _retrain_events(settings) -> list[dict]:
    with postgres.database(settings, settings.airflow_db) as conn:
        return [r[0] for r in conn.execute("select e.extra from asset_event e join asset a on a.id = e.asset_id"
                                           " where a.name = %s order by e.id", (f"{MODEL}_retrain",))]


def test_a_try_that_fails_while_logging_leaves_no_decision_and_its_retry_requests_the_retrain(shop):
    settings = shop
    drop_registered_model(settings, MODEL)
    with postgres.warehouse(settings) as conn:
        conn.execute("drop table if exists ops.model_monitoring")
    # Production is a version without a reference profile: monitoring's checks breach and ask for a retrain.
    version = register_tiny_version(settings, MODEL)
    client = registry.client(settings)
    client.set_registered_model_alias(MODEL, "production", version)
    experiment = client.get_experiment_by_name(f"{MODEL}_monitoring")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(f"{MODEL}_monitoring")
    if experiment is None or experiment.lifecycle_stage == "active":
        client.delete_experiment(experiment_id)  # MLflow now refuses the monitoring run: the try fails there
    events_before = len(_retrain_events(settings))

    with pytest.raises(Exception, match="deleted experiment"):
        monitoring.monitor(settings, SPEC, "reliability-try-1")
    recorded = query(settings, "select check_name, breach from ops.model_monitoring order by id")
    assert list(recorded.itertuples(index=False, name=None)) == [("reference", True)]  # the checks, no decision

    client.restore_experiment(experiment_id)
    run = dagrun.run_dag(settings, f"monitor_{MODEL}")  # the retry, through Airflow
    assert run.task_states == {"monitor": "success", "request_retrain": "success", "record_decision": "success"}
    events = _retrain_events(settings)
    assert len(events) == events_before + 1 and events[-1]["production_version"] == version
    decisions = query(settings, "select subject, breach, airflow_run_id from ops.model_monitoring"
                                " where check_name = 'decision'")
    assert list(decisions.itertuples(index=False, name=None)) == [("retrain", True, run.run_id)]
    # what the report and the ML models page show: the checks and decision of that run, not the failed try's
    with postgres.warehouse(settings) as conn:
        latest = ops.latest_monitoring(conn, MODEL)
    assert list(latest[["check_name", "breach"]].itertuples(index=False, name=None)) == [
        ("reference", True), ("decision", True)]
    drop_registered_model(settings, MODEL)
