"""The whole pipeline through Airflow (dag.test against the migrated metadata DB), real PostgreSQL, dbt, GX, MLflow."""

import pytest

from mlscale import postgres, registry
from mlscale.airflow import dagrun
from mlscale.local.datagen import ShopParams, generate
from tests.helpers import drop_registered_model

pytestmark = pytest.mark.e2e
MODEL = "churn_90d"
PARAMS = ShopParams(customers=600, days=270, seed=21)


def _rows(settings, sql, *args):
    with postgres.warehouse(settings) as conn:
        return conn.execute(sql, args).fetchall()


def _candidate_event(settings):
    """(extra, source run id) of the latest `<MODEL>_candidate` Asset event in the Airflow metadata DB."""
    with postgres.database(settings, settings.airflow_db) as conn:
        return conn.execute("select e.extra, e.source_run_id from asset_event e join asset a on a.id = e.asset_id"
                            " where a.name = %s order by e.id desc limit 1", (f"{MODEL}_candidate",)).fetchone()


def _raw_orders_events(settings, run_id: str) -> int:
    """Asset events of raw.orders that the DAG run `run_id` emitted (Airflow metadata DB)."""
    with postgres.database(settings, settings.airflow_db) as conn:
        return conn.execute("select count(*) from asset_event e join asset a on a.id = e.asset_id"
                            " where a.name = 'raw.orders' and e.source_run_id = %s", (run_id,)).fetchone()[0]


@pytest.fixture
def clean_registry(stack):
    drop_registered_model(stack, MODEL)
    return registry.client(stack)


def test_pipeline_end_to_end(warehouse, clean_registry, one_configuration_spec):
    stats = generate(PARAMS, warehouse.landing_dir)

    runs = {}
    for dag_id in ("ingest_landing", "warehouse_etl", f"monitor_{MODEL}", f"train_{MODEL}", f"promote_{MODEL}",
                   f"score_{MODEL}", "business_report"):
        runs[dag_id] = dagrun.run_dag(warehouse, dag_id)
        assert runs[dag_id].state == "success", runs[dag_id].task_states

    # Data landed, passed its gates and built the mart.
    for feed, rows in stats.rows.items():
        assert _rows(warehouse, f"select count(*) from raw.{feed}")[0][0] == rows, feed
    suites = dict(_rows(warehouse, "select suite, bool_and(success or severity = 'warning') from ops.dq_results group by suite"))
    assert suites == {"raw_orders": True, "raw_orders_per_file": True, "raw_ingest_batch": True,
                      "mart_customer_features": True, "mart_customer_labels": True}
    assert _rows(warehouse, "select count(*) from ops.ingest_files where etl_status = 'published'")[0][0] == \
        sum(stats.files.values())
    latest_as_of, active = _rows(
        warehouse, "select as_of_date, count(*) from ml.customer_features group by 1 order by 1 desc limit 1")[0]

    # One version, promoted to Production with both a stage and the alias.
    state = registry.registry_state(warehouse, MODEL)
    assert state == [{"version": "1", "stage": "Production", "aliases": ["production"]}]
    run = clean_registry.get_run(clean_registry.get_model_version(MODEL, "1").run_id)
    assert run.data.metrics["test_roc_auc"] > 0.7
    assert run.data.params["label"] == "churned_90d"
    assert _rows(warehouse, "select decision, stage from ops.model_promotions") == [("promoted", "Production")]
    # The candidate Asset event (which triggers promote_) names the model, version and MLflow run.
    assert _candidate_event(warehouse) == ({"model": MODEL, "version": "1", "run_id": run.info.run_id},
                                           runs[f"train_{MODEL}"].run_id)

    # Every active customer of the latest as-of date is scored once, by version 1.
    scored = _rows(warehouse, "select model_version, as_of_date, count(*), count(distinct customer_id), min(decile),"
                              " max(decile) from ml.predictions group by 1, 2")
    assert scored == [("1", latest_as_of, active, active, 1, 10)]

    # The KPI marts and the report: revenue at risk of that scoring; no value yet (its outcome lies ahead).
    assert runs["business_report"].task_states == {"build_kpis": "success", "render_report": "success"}
    assert _rows(warehouse, "select as_of_date, model_version, scored_customers from kpi.kpi_revenue_at_risk") == \
        [(latest_as_of, "1", active)]
    assert _rows(warehouse, "select count(*) from kpi.kpi_model_value")[0][0] == 0
    assert "<h1>Business report</h1>" in (warehouse.reports_dir / "business_report.html").read_text()

    # A rerun of ingest_landing with nothing new is skipped and announces nothing: no warehouse_etl run follows.
    rerun = dagrun.run_dag(warehouse, "ingest_landing")
    assert rerun.task_states == {"load_landing_files": "skipped"}
    assert (_raw_orders_events(warehouse, runs["ingest_landing"].run_id), _raw_orders_events(warehouse, rerun.run_id)) \
        == (1, 0)

    # No Production yet: monitoring asked for the first model.
    assert runs[f"monitor_{MODEL}"].task_states == {"monitor": "success", "request_retrain": "success",
                                                    "record_decision": "success"}
    assert _rows(warehouse, "select detail from ops.model_monitoring where check_name = 'decision'") == \
        [(f"{MODEL} has no Production version yet",)]
    # With version 1 serving the population it was trained on, monitoring asks for nothing.
    run = dagrun.run_dag(warehouse, f"monitor_{MODEL}")
    assert run.task_states == {"monitor": "success", "request_retrain": "skipped", "record_decision": "success"}

    # Retraining (by hand) on the same data gives the same model: it passes Staging but is not significantly
    # better than Production, so version 1 keeps serving and version 2 is scored in shadow.
    runs = {dag_id: dagrun.run_dag(warehouse, dag_id)
            for dag_id in (f"train_{MODEL}", f"promote_{MODEL}", f"score_{MODEL}")}
    assert runs[f"promote_{MODEL}"].task_states == {"evaluate": "success", "switch": "skipped"}
    state = {v["version"]: (v["stage"], v["aliases"]) for v in registry.registry_state(warehouse, MODEL)}
    assert state == {"2": ("Staging", ["staging"]), "1": ("Production", ["production"])}
    assert _rows(warehouse, "select decision from ops.model_promotions order by id") == [("promoted",), ("rejected",)]
    # Rescoring the same as-of date replaces the rows: no duplicates; the challenger's go to the shadow table.
    assert _rows(warehouse, "select model_version, count(*) from ml.predictions group by 1") == [("1", active)]
    assert _rows(warehouse, "select model_version, count(*) from ml.shadow_predictions group by 1") == [("2", active)]
