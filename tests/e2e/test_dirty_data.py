"""Bad deliveries through Airflow: each is caught where it should be, and nothing bad reaches the marts."""

import re
from urllib.parse import unquote

import pytest

from mlscale import postgres
from mlscale.airflow import dagrun
from mlscale.local.datagen import DirtyData, ShopParams, generate
from mlscale.data import quality
from mlscale.data.ingest import ingest_landing, retract_file
from mlscale.data.warehouse import run_etl
from tests.helpers import airflow_shop, checksum, dbt, query, scalar

pytestmark = pytest.mark.e2e
SMALL = dict(customers=300, days=130, seed=8)


def _dbt_tasks_did_not_run(result):
    dbt = {t: s for t, s in result.task_states.items() if t.startswith("dbt.")}
    assert dbt and set(dbt.values()) == {"upstream_failed"}, dbt


def _contents(settings) -> dict[str, tuple[int, str]]:
    """(row count, checksum) of every table and view the pipeline writes: raw, staging, intermediate, core, ml
    (ops keeps the run ledger, which records each run by design)."""
    relations = query(settings, "select table_schema || '.' || table_name as name from information_schema.tables"
                                " where table_schema in ('raw', 'staging', 'intermediate', 'core', 'ml') order by 1")
    return {name: (scalar(settings, f"select count(*) from {name}"), checksum(settings, name))
            for name in relations["name"]}


MARTS = ["core.fct_orders", "intermediate.int_customer_days", "ml.customer_features", "core.dim_customers"]


def test_null_flood_fails_the_run_before_dbt(warehouse):
    generate(ShopParams(**SMALL, dirty=DirtyData(null_flood_day=20)), warehouse.landing_dir)
    dagrun.run_dag(warehouse, "ingest_landing")

    result = dagrun.run_dag(warehouse, "warehouse_etl", check=False)

    assert result.state == "failed"
    assert result.task_states["check_raw"] == "failed"
    _dbt_tasks_did_not_run(result)
    assert result.task_states["check_features"] == "upstream_failed"
    assert scalar(warehouse, "select to_regclass('ml.customer_features')") is None
    failed = scalar(warehouse, "select count(*) from ops.dq_results where suite = 'raw_orders_per_file' and not success")
    assert failed == 1
    # The failed gate's results are in the Data Docs, under the run's name, with the values that failed.
    assert result.task_states["data_docs"] == "success"
    index = quality.docs_index(warehouse)
    (page,) = {unquote(p) for p in re.findall(r"validations/raw_orders_per_file/[^\"\\]+\.html", index.read_text())
               if quality._run_name(result.run_id) in unquote(p)}  # the index's links are URL-encoded
    assert "Failed" in (index.parent / page).read_text()
    assert scalar(warehouse, "select count(*) from ops.ingest_files where etl_status = 'published'") == 0

    # The operator takes the flooded file back; the next run publishes everything else (warehouse_etl's steps in
    # one process, `mlscale etl`: the failing run went through Airflow above, the retry's path is the same code).
    flooded = scalar(warehouse, "select _file_sha256 from raw.orders group by 1 having avg((channel is null)::int) > 0.5")
    assert retract_file(warehouse.dsn(warehouse.warehouse_db), flooded, "NULL flood in channel") > 0
    assert run_etl(warehouse, "after-retraction")["published"] > 0
    assert scalar(warehouse, "select count(*) from ops.ingest_files where status = 'loaded' and etl_status is distinct"
                           " from 'published'") == 0
    assert scalar(warehouse, "select count(*) from core.fct_orders") == scalar(warehouse, "select count(*) from raw.orders")


def test_stale_source_fails_the_run(warehouse):
    generate(ShopParams(**SMALL), warehouse.landing_dir)
    dagrun.run_dag(warehouse, "ingest_landing")
    with postgres.warehouse(warehouse) as conn:
        conn.execute("update raw.orders set _loaded_at = now() - interval '3 days'")

    result = dagrun.run_dag(warehouse, "warehouse_etl", check=False)

    assert result.state == "failed"
    assert result.task_states["check_freshness"] == "failed"
    _dbt_tasks_did_not_run(result)


def test_missing_required_column_fails_ingest_and_publishes_nothing(warehouse):
    folder = warehouse.landing_dir / "orders" / "dt=2026-01-01"
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text("order_id,ordered_at,amount\n1,2026-01-01T10:00:00+00:00,3\n")

    result = dagrun.run_dag(warehouse, "ingest_landing", check=False)

    assert result.state == "failed" and result.task_states["load_landing_files"] == "failed"
    assert scalar(warehouse, "select status || ': ' || error from ops.ingest_files") == \
        f"rejected: {folder / 'orders.csv'}: missing required column(s) customer_id for feed orders"
    assert scalar(warehouse, "select count(*) from raw.orders") == 0


def test_daily_increments_with_late_and_duplicate_rows_equal_a_full_refresh(warehouse):
    params = ShopParams(**SMALL, dirty=DirtyData(late_rows=0.1, duplicate_rows=0.03, redelivered_files=0.1,
                                                 malformed_rows=0.002))
    generate(params, warehouse.landing_dir, days=range(0, 110))
    # The history as warehouse_etl's steps build it in one process (`mlscale etl`); the increments below go
    # through Airflow.
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    run_etl(warehouse, "history")
    # Three more days arrive, with late rows of earlier days among them: an incremental run.
    generate(params, warehouse.landing_dir, days=range(110, 113))
    for dag_id in ("ingest_landing", "warehouse_etl"):
        dagrun.run_dag(warehouse, dag_id)
    assert scalar(warehouse, "select count(*) from ops.ingest_files where etl_status = 'published'") == \
        scalar(warehouse, "select count(*) from ops.ingest_files where status = 'loaded'")
    assert scalar(warehouse, "select count(*) from core.fct_orders") == \
        scalar(warehouse, "select count(distinct order_id) from raw.orders")
    incremental = {t: checksum(warehouse, t) for t in MARTS}
    contents = _contents(warehouse)

    # The same data interval run twice (ingest_landing and warehouse_etl again on the same deliveries) leaves
    # every table of the warehouse as it was: row counts and checksums (RELIABILITY.md).
    for dag_id in ("ingest_landing", "warehouse_etl"):
        dagrun.run_dag(warehouse, dag_id)
    assert _contents(warehouse) == contents
    assert len(contents) > 15 and {"raw.orders", "core.fct_orders", "ml.customer_features"} <= set(contents)

    # A full refresh from raw gives exactly the incremental result.
    dbt(warehouse, "build", "--full-refresh")
    assert {t: checksum(warehouse, t) for t in MARTS if t != "core.dim_customers"} == \
        {t: v for t, v in incremental.items() if t != "core.dim_customers"}


def test_a_failing_dbt_test_fails_the_run_and_skips_what_depends_on_it(warehouse, tmp_path):
    airflow_shop(warehouse, tmp_path / "shop")  # the e2e shop as ingest_landing and warehouse_etl built it: a copy
    before = {t: checksum(warehouse, t) for t in MARTS}
    # A support ticket with a topic the warehouse does not know: the contract types topic as free text, so it
    # loads; the accepted_values test of stg_shop__support_tickets is what catches it.
    ticket_id, customer_id = (int(v) for v in query(warehouse, "select max(ticket_id) + 1 as t, min(customer_id) as c"
                                                                " from raw.support_tickets").iloc[0])
    day = scalar(warehouse, "select (max(ordered_at) + interval '1 day')::date from raw.orders")
    folder = warehouse.landing_dir / "support_tickets" / f"dt={day}"
    folder.mkdir(parents=True)
    (folder / "support_tickets.csv").write_text("ticket_id,customer_id,created_at,topic,satisfaction\n"
                                                f"{ticket_id},{customer_id},{day}T09:00:00+00:00,warranty,4\n")
    dagrun.run_dag(warehouse, "ingest_landing")

    result = dagrun.run_dag(warehouse, "warehouse_etl", check=False)

    assert result.state == "failed"
    # the view builds; its accepted_values test fails
    assert result.task_states["dbt.stg_shop__support_tickets.run"] == "success"
    assert result.task_states["dbt.stg_shop__support_tickets.test"] == "failed"
    # Everything built on the tickets is skipped, and so are the feature gate and the publication...
    for task in ("dbt.int_customer_days.run", "dbt.customer_features.run", "check_features",
                 "publish_batch"):
        assert result.task_states[task] == "upstream_failed", task
    # ...while what does not read them still builds.
    assert result.task_states["dbt.stg_shop__orders.run"] == "success"
    # The one `dbt build` (Cosmos's watcher producer) reported the failed test; each of the task's two retries ran
    # `dbt test` for that model alone, as clearing the task in the UI does (the data is still bad: both failed).
    with postgres.database(warehouse, warehouse.airflow_db) as conn:
        assert conn.execute("select try_number from task_instance where dag_id = 'warehouse_etl' and run_id = %s"
                            " and task_id = 'dbt.stg_shop__support_tickets.test'", (result.run_id,)).fetchone()[0] == 3
    assert {t: checksum(warehouse, t) for t in MARTS} == before
    sha, etl_status = query(warehouse, f"select sha256, etl_status from ops.ingest_files where path like '%dt={day}%'"
                                       ).iloc[0]
    assert etl_status != "published"

    # Once the file is taken back, the next run publishes (warehouse_etl's steps in one process, as above).
    assert retract_file(warehouse.dsn(warehouse.warehouse_db), sha, "unknown ticket topic 'warranty'") == 1
    done = run_etl(warehouse, "after-retraction")
    assert done["mart_checks"]["mart_customer_features"]["failed_critical"] == 0
