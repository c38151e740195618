"""
### warehouse_etl — raw → staging → feature marts, gated by Great Expectations

**Owner:** Data Engineer · **Triggered by:** the `raw.orders` asset (a finished `ingest_landing`).

1. `check_raw`: the GX suite `include/gx/raw_orders.yml` on `raw.orders`; a failed critical
   expectation fails the run before dbt touches anything.
2. `dbt`: the dbt project rendered by astronomer-cosmos from `dbt_project/target/manifest.json`
   (built by `make setup`; never `dbt ls` at parse time): one task per model, each running the
   model and then its tests; a failure skips everything downstream.
3. `check_features`: the GX suite `include/gx/mart_customer_features.yml` on `ml.customer_features`.

Every GX result lands in `ops.dq_results`. **Produces:** the `ml.customer_features` asset, which
triggers the `train_<model>` DAGs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import dag, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import InvocationMode, LoadMode, TestBehavior, TestIndirectSelection

from mlscale.assets import CUSTOMER_FEATURES, RAW_ORDERS, START_DATE, default_args
from mlscale.config import settings

SETTINGS = settings()


def _quality_gate(suite: str) -> dict:
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from mlscale.config import settings
    from mlscale.quality import DataQualityError, gate

    try:
        return gate(settings(), suite, get_current_context()["run_id"])
    except DataQualityError as exc:
        raise AirflowFailException(str(exc)) from exc


@dag(
    schedule=[RAW_ORDERS],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args("data_engineer"),
    tags=["data-engineer", "dbt", "quality"],
    doc_md=__doc__,
)
def warehouse_etl():
    @task
    def check_raw() -> dict:
        """GX suite raw_orders on raw.orders."""
        return _quality_gate("raw_orders")

    dbt = DbtTaskGroup(
        group_id="dbt",
        project_config=ProjectConfig(
            dbt_project_path=SETTINGS.dbt_project_dir,
            manifest_path=SETTINGS.dbt_manifest,
        ),
        profile_config=ProfileConfig(
            profile_name="mlscale",
            target_name="default",
            profiles_yml_filepath=SETTINGS.dbt_project_dir / "profiles.yml",
        ),
        execution_config=ExecutionConfig(
            dbt_executable_path=str(Path(sys.executable).parent / "dbt"),
            invocation_mode=InvocationMode.DBT_RUNNER,
            # A model's test task runs only tests whose every parent is built by then (relationships
            # tests wait for the later model), so no test runs against a table that does not exist yet.
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
        ),
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.AFTER_EACH),
        operator_args={"install_deps": False},
    )

    @task(outlets=[CUSTOMER_FEATURES])
    def check_features() -> dict:
        """GX suite mart_customer_features on ml.customer_features."""
        return _quality_gate("mart_customer_features")

    check_raw() >> dbt >> check_features()


warehouse_etl()
