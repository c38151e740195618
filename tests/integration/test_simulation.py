"""A short replay on real PostgreSQL, dbt, GX and MLflow: every step recorded, judged, written to CSV and PNG."""

import pandas as pd
import pytest

from mlscale.simulation import Scenario, replay_settings, simulate
from mlscale.specs import load_specs
from tests.helpers import query

pytestmark = pytest.mark.integration


def test_replay_settings_never_share_the_demo_namespace(stack):
    sim = replay_settings(stack)
    assert (sim.warehouse_db, sim.mlflow_db) == (f"{stack.warehouse_db}_sim", f"{stack.mlflow_db}_sim")
    assert sim.mlflow_port != stack.mlflow_port and sim.landing_dir != stack.landing_dir


def test_short_simulation_writes_every_step_to_csv_and_plot(warehouse, tmp_path):
    spec = load_specs()["churn_90d"]
    scenario = Scenario(customers=600, seed=21, history_days=270, days=14, concept_drift_day=None)
    lines = []
    outcome = simulate(warehouse, spec, scenario, tmp_path / "out", echo=lines.append)

    table = pd.read_csv(outcome.csv)
    assert table["step"].tolist() == [1, 2]
    assert table["as_of_date"].is_monotonic_increasing and table["as_of_date"].nunique() == 2
    # Progress: a header, the history, one line per step, the label tail and the result.
    assert len(lines) == 2 + scenario.steps + 2 and lines[2].startswith("  step  1/2")
    # Each step scored its as-of date with the Production version, and was monitored.
    scored = query(warehouse, "select as_of_date::text, model_version, count(*) as n from ml.predictions"
                              " group by 1, 2 order by 1")
    assert scored["as_of_date"].tolist() == table["as_of_date"].tolist()
    assert scored["model_version"].tolist() == table["production_version"].astype(str).tolist()
    assert scored["n"].tolist() == table["customers"].tolist()
    decisions = query(warehouse, "select count(*) as n from ops.model_monitoring where check_name = 'decision'")
    assert decisions["n"].iloc[0] == scenario.steps
    # After the label tail every step is judged; while the frozen version serves, both policies are one model.
    assert table["judged_customers"].tolist() == table["customers"].tolist()
    frozen_serving = table["production_version"].astype(str) == outcome.frozen_version
    assert frozen_serving.any()
    assert (table.loc[frozen_serving, "rolling_roc_auc"] - table.loc[frozen_serving, "frozen_roc_auc"]).abs().max() < 0.005
    assert table["rolling_roc_auc"].between(0.5, 1).all()
    assert outcome.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and outcome.png.stat().st_size > 10_000
