"""
### warehouse_etl — raw → staging → intermediate → marts, gated by Great Expectations

**Owner:** Data Engineer · **Triggered by:** the `raw.orders` asset (a finished `ingest_landing`).

1. `claim_batch`: claims the landing files loaded since the last published run (and those of
   failed runs) in `ops.ingest_files`: this run validates and publishes exactly those.
2. `check_raw`: the GX suites `include/gx/raw_*.yml` on the claimed rows (contract columns not
   NULL, value ranges, per-file NULL floods, quarantine share per file). A failed critical
   expectation fails the run before dbt touches anything; the files stay unpublished.
3. `check_freshness`: `dbt source freshness`; a source past its error threshold fails the run.
4. `dbt`: the dbt project rendered by astronomer-cosmos from `dbt_project/target/manifest.json`
   (built by `make setup`; never `dbt ls` at parse time) in Cosmos's watcher mode: `dbt_producer_watcher`
   runs one `dbt build` of the project (dbt's own threads; its log is dbt's progress), then a task per
   seed, snapshot and model and one per model for its tests turn green or red with what dbt reported
   (they start at `dbt_build_ended`, once the producer has ended; `checks_passed` gates the build).
   A failure fails its task and skips everything downstream. Clearing a failed model's task reruns
   dbt for that model alone (`dbt run`/`dbt test --select` it); a cleared producer skips, never
   rebuilding the whole project in the same run. Incremental models process only what the new files
   touched.
5. `vacuum`: `VACUUM (ANALYZE)` of every table the build left with more dead rows than autovacuum
   would wait for (the feature mart's relabelled open weeks, incremental models' changed keys), and
   `ANALYZE` of every table with more new rows than autoanalyze would wait for (a bulk load), so the
   checks, training, scoring and the next run's plans neither read dead rows nor guess.
6. `check_features`: the GX suites `include/gx/mart_*.yml` on the feature mart: the rows this run
   wrote (`mart_customer_features`) and the label rate at the newest matured as-of date
   (`mart_customer_labels`).
7. `publish_batch`: marks the claimed files published.
8. `data_docs`: adds this run's GX results to the GX Data Docs site
   (`.mlscale/gx/gx/uncommitted/data_docs/local_site/index.html`) once both gates are done, also
   when one failed: its page shows up to 20 of the values that failed each expectation.

Every GX result also lands in `ops.dq_results` (the business report reads it). **Produces:** the
`ml.customer_features` asset, which triggers the `train_<model>` DAGs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import TriggerRule, dag, get_current_context, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior, TestIndirectSelection

from mlscale.airflow.assets import CUSTOMER_FEATURES, RAW_ORDERS, dag_args, failing_on
from mlscale.airflow.dbt_group import watch_after_build
from mlscale.config import settings

SETTINGS = settings()


def _quality_gate(layer: str) -> dict:
    from mlscale.config import settings
    from mlscale.data.quality import DataQualityError, gate, suites

    s = settings()
    with failing_on(DataQualityError):
        return gate(s, suites(s, layer), get_current_context()["run_id"])


@dag(**dag_args(
    "data_engineer",
    schedule=[RAW_ORDERS],
    tags=["data-engineer", "dbt", "quality"],
    doc_md=__doc__,
))
def warehouse_etl():
    @task
    def claim_batch() -> int:
        """Claim the loaded, not yet published landing files for this run."""
        from mlscale.config import settings
        from mlscale.data.warehouse import claim_batch

        return claim_batch(settings(), get_current_context()["run_id"])

    @task
    def check_raw() -> dict:
        """GX suites include/gx/raw_*.yml on this run's new rows."""
        return _quality_gate("raw")

    @task
    def check_freshness() -> dict:
        """dbt source freshness; an error threshold fails the run (no retries)."""
        from mlscale.config import settings
        from mlscale.data.warehouse import StaleSource, source_freshness

        with failing_on(StaleSource):
            return source_freshness(settings())

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
        # Cosmos's watcher mode: one `dbt build` (the producer task, dbt's own threads) builds and tests
        # everything; a task per model reports its build and one its tests (README, "dbt in Airflow").
        # The dbt CLI in a child process: in-process (DBT_RUNNER) the build ran 16 s instead of 9 (bench/etl_overhead.py).
        # The producer's retry would never rebuild (Cosmos skips it): it fails at once, and the model tasks retry.
        execution_config=ExecutionConfig(
            dbt_executable_path=str(Path(sys.executable).parent / "dbt"),
            execution_mode=ExecutionMode.WATCHER,
            invocation_mode=InvocationMode.SUBPROCESS,
            # A cleared or retried model task runs `dbt run`/`dbt test` for its model alone: then only tests
            # whose every parent is built (a relationships test waits for the other model).
            test_indirect_selection=TestIndirectSelection.CAUTIOUS,
            setup_operator_args={"retries": 0},
        ),
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            # The KPI marts read scoring's predictions: business_report builds them (selectors.yml).
            exclude=["tag:kpi"],
            test_behavior=TestBehavior.AFTER_EACH,
        ),
        operator_args={"install_deps": False},
    )

    @task
    def vacuum() -> list[str]:
        """VACUUM (ANALYZE) the tables the build left with many dead rows, ANALYZE those with many new ones."""
        from mlscale.config import settings
        from mlscale.data.warehouse import vacuum_and_analyze

        return vacuum_and_analyze(settings())

    @task(outlets=[CUSTOMER_FEATURES])
    def check_features() -> dict:
        """GX suites include/gx/mart_*.yml on ml.customer_features."""
        return _quality_gate("mart")

    @task
    def publish_batch() -> int:
        """Mark this run's files published."""
        from mlscale.config import settings
        from mlscale.data.warehouse import publish_batch

        return publish_batch(settings(), get_current_context()["run_id"])

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def data_docs() -> str | None:
        """This run's GX results in the Data Docs site, after both gates (also a failed one)."""
        from mlscale.config import settings
        from mlscale.data.quality import build_docs

        index = build_docs(settings(), get_current_context()["run_id"])
        return None if index is None else str(index)

    checks_passed = EmptyOperator(task_id="checks_passed", doc_md="The raw gate and source freshness passed: dbt may build.")
    raw, features = check_raw(), check_features()
    claim_batch() >> [raw, check_freshness()] >> checks_passed
    watch_after_build(dbt, checks_passed)  # checks_passed >> dbt; producer >> dbt_build_ended >> the first watchers
    dbt >> vacuum() >> features >> publish_batch()
    [raw, features] >> data_docs()


warehouse_etl()
