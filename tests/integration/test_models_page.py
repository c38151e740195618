"""The ML models page when MLflow is down (it says so per model, at once, and still shows the KPIs), and the
monitoring it shows."""

import dataclasses
import time

import pytest

from mlscale import ops, postgres
from mlscale.airflow import models_page
from mlscale.specs import load_specs

pytestmark = pytest.mark.integration


def test_an_unreachable_registry_is_reported_not_waited_for(stack):
    down = dataclasses.replace(stack, mlflow_port=1)  # nothing listens there
    t0 = time.monotonic()
    page = models_page.render_page(down)
    assert time.monotonic() - t0 < 30
    assert "<h1>ML models</h1>" in page and 'class="tiles"' in page
    for name in load_specs():
        assert f'id="model-{name}"' in page
    assert page.count("The model registry at http://127.0.0.1:1 does not answer") == len(load_specs())


def test_the_monitoring_shown_is_the_newest_decision_about_the_serving_version(warehouse):
    """A check that ran before v1 served (no Production version yet) says nothing about v1."""
    rows = [("run-a", None, "decision", True, "m has no Production version yet"),
            ("run-b", "1", "feature_psi", False, "psi 0.02"), ("run-b", "1", "decision", False, "keep"),
            ("run-c", "2", "decision", True, "a later version")]
    with postgres.warehouse(warehouse) as conn:
        ops.ensure(conn, "model_monitoring")
        assert ops.latest_monitoring(conn, "m", "1").empty  # before any check
        conn.cursor().executemany("insert into ops.model_monitoring (model, model_version, as_of_date, check_name, subject,"
                         " breach, detail, airflow_run_id) values ('m', %s, '2026-10-22', %s, 'x', %s, %s, %s)",
                         [(version, check, breach, detail, run) for run, version, check, breach, detail in rows])
        about_v1 = ops.latest_monitoring(conn, "m", "1")
        newest = ops.latest_monitoring(conn, "m")
    assert about_v1[["model_version", "check_name", "detail"]].values.tolist() == [
        ["1", "feature_psi", "psi 0.02"], ["1", "decision", "keep"]]
    assert newest["model_version"].tolist() == ["2"]
