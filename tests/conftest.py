"""Test settings: the same server as the demo, but databases `*_test`, MLflow on its own port, data in tmp folders.

The environment is exported here, at import, so Airflow reads it before anything imports Airflow.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MLSCALE_DB_SUFFIX", "_test")
os.environ.setdefault("MLSCALE_MLFLOW_PORT", "5055")
# Reports the tests write (business report, browser screenshots) are kept here as test artifacts.
os.environ.setdefault("MLSCALE_REPORTS_DIR", str(Path(__file__).resolve().parents[1] / "reports" / "test"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

import pytest  # noqa: E402

from mlscale.config import Settings  # noqa: E402
from tests.helpers import empty_warehouse  # noqa: E402

os.environ.update(Settings.from_env().service_env())


@pytest.fixture(scope="session")
def manifest() -> None:
    """dbt's manifest.json, which warehouse_etl renders from (no database needed)."""
    from mlscale.services import build_dbt_manifest

    build_dbt_manifest(Settings.from_env())


@pytest.fixture(scope="session")
def stack(manifest) -> Settings:
    """Real PostgreSQL (test databases), migrated Airflow metadata DB and a real MLflow server."""
    from mlscale import services
    from mlscale.setup import setup

    before = services.http_ok(f"{Settings.from_env().mlflow_uri}/health")
    settings = setup(Settings.from_env())
    os.environ.update(settings.service_env())
    yield settings
    if not before:
        services.stop_background(settings, f"mlflow{settings.db_suffix}")


@pytest.fixture
def warehouse(stack: Settings, tmp_path) -> Settings:
    """An empty test warehouse (schemas dropped) and an empty landing folder in tmp."""
    empty_warehouse(stack)
    landing = tmp_path / "landing"
    landing.mkdir()
    env = {**os.environ, "MLSCALE_LANDING_DIR": str(landing)}
    os.environ["MLSCALE_LANDING_DIR"] = str(landing)
    yield Settings.from_env(env)
    os.environ["MLSCALE_LANDING_DIR"] = str(stack.landing_dir)
