"""Shared by the promotion and approval tests: a small shop built through Airflow, model variants, registry views."""

import contextlib
import json
import os
from pathlib import Path

import mlflow
import pytest

from mlscale import postgres, registry
from mlscale.local import airflow_ui, services
from mlscale.modeling import training
from mlscale.production import promotion
from mlscale.postgres import table_exists
from mlscale.specs import BinnedMeanBaseline, Business, Candidate, Features, load_specs
from tests.helpers import ONE_CONFIGURATION, airflow_shop, drop_registered_model, one_configuration

MODEL = "churn_90d"
SPEC = load_specs()[MODEL]
# The shipped spec with one configuration, the one its search picks on this shop: the same features, baselines
# and gates, without the search's cost (on 600 customers BG/NBD scores 0.883; an unregularised C=10 loses to it).
FAST = SPEC.model_copy(update={"candidates": [Candidate(**c) for c in ONE_CONFIGURATION]})
# Two weak features and no floors or ceilings: registered (it beats the mean), clearly worse than FAST.
WEAK = SPEC.model_copy(update={
    "features": Features(numeric=["tenure_days", "age"]), "baselines": [BinnedMeanBaseline(kind="binned_mean", feature="age", bins=1)],
    "segments": {}, "business": Business(top_k_share=0.1),
    "candidates": [Candidate(name="logistic_regression", params={"C": 1.0})],
    "promotion": SPEC.promotion.model_copy(update={"staging": SPEC.promotion.staging.model_copy(
        update={"min_metrics": {}, "max_metrics": {}})}),
})


@pytest.fixture(scope="module")
def shop(stack, tmp_path_factory):
    """The e2e shop built through ingest_landing and warehouse_etl: once per test run, copied for each module."""
    airflow_shop(stack, tmp_path_factory.mktemp("landing"))
    mlflow.set_tracking_uri(stack.mlflow_uri)
    return stack


@pytest.fixture
def one_configuration_spec(spec_variant):
    """The bundle with MODEL's shipped spec alone, its search cut to ONE_CONFIGURATION: the DAGs, features, baselines
    and gates are the shipped ones. The shipped searches are trained whole where they are the subject
    (tests/integration/test_training_mlflow.py, the model CI gate, the replay); here they would only add their cost."""
    spec_variant(MODEL, one_configuration)


@pytest.fixture
def fresh(shop):
    """No registered versions, no audit rows, no predictions."""
    drop_registered_model(shop, MODEL)
    with postgres.warehouse(shop) as conn:
        for table in ("ops.model_promotions", "ml.predictions", "ml.shadow_predictions"):
            if table_exists(conn, table):
                conn.execute(f"delete from {table}")
    return shop


def train_version(settings, spec) -> str:
    """Train `spec` and return the registered version."""
    result = training.train(settings, spec)
    assert result["registered"], result["reason"]
    return result["version"]


def registry_state(settings):
    """version -> (stage, aliases) of every version of MODEL."""
    return {v["version"]: (v["stage"], v["aliases"]) for v in registry.registry_state(settings, MODEL)}


def weak_production_and_better_candidate(settings) -> tuple[str, str]:
    """Production v1 trained on WEAK, and a clearly better candidate (FAST) registered, not yet promoted."""
    weak = train_version(settings, WEAK)
    assert promotion.promote(settings, WEAK, weak).decision == "promoted"
    return weak, train_version(settings, FAST)


@contextlib.contextmanager
def api_server(settings, port: int):
    """A real Airflow api-server (UI, REST API, plugins) on the settings' metadata DB; yields (URL, admin password)."""
    os.environ["MLSCALE_AIRFLOW_PORT"] = str(port)
    env = airflow_ui.ui_env(settings)
    name = f"airflow-api-server{settings.db_suffix}"
    services.start_background(settings, name, [str(services.BIN / "airflow"), "api-server", "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_until_up(settings, name, f"{url}/api/v2/monitor/health", timeout=120)
        passwords = json.loads(Path(env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE") or
                                    settings.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
        yield url, passwords[airflow_ui.ADMIN_USER]
    finally:
        services.stop_background(settings, name)
        os.environ.pop("MLSCALE_AIRFLOW_PORT", None)
