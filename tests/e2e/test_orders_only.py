"""Only the mandatory orders feed arrives, with only its required columns (order id, customer, time, amount, as a
real orders log has them): ingest, warehouse, training, promotion and scoring still run through Airflow."""

import csv

import mlflow
import pytest

from mlscale import dagrun, registry
from mlscale.datagen import ShopParams, generate
from tests.helpers import drop_registered_model, query, scalar

pytestmark = pytest.mark.e2e
MODEL = "churn_90d"


def test_orders_only_chain(warehouse):
    drop_registered_model(warehouse, MODEL)
    generate(ShopParams(customers=2000, days=270, seed=12, feeds=("orders",)), warehouse.landing_dir)
    for path in (warehouse.landing_dir / "orders").glob("dt=*/orders.csv"):  # no optional column at all
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns = [c for c in reader.fieldnames if c != "channel"]
            rows = [{c: row[c] for c in columns} for row in reader]
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    for dag_id in ("ingest_landing", "warehouse_etl", f"train_{MODEL}", f"promote_{MODEL}", f"score_{MODEL}"):
        run = dagrun.run_dag(warehouse, dag_id)
        assert run.state == "success", (dag_id, run.task_states)

    assert scalar(warehouse, "select count(*) from raw.customers") == 0
    assert scalar(warehouse, "select count(*) from raw.orders") > 0
    assert scalar(warehouse, "select count(*) from raw.orders where channel is not null") == 0
    # The raw gate judged the channel-less feed by its own files: no NULL flood, every file published.
    assert scalar(warehouse, "select count(*) from ops.ingest_files where etl_status is distinct from 'published'") == 0
    features = query(warehouse, "select * from ml.customer_features")
    assert len(features) > 1000
    # no attribute was ever delivered: every customer has one version, from the first order, all imputed
    assert set(features["region"]) == {"unknown"} and features["is_imputed_channel"].all()
    assert (features["sessions_30d"] == 0).all() and (features["tickets_90d"] == 0).all()
    assert scalar(warehouse, "select count(*) filter (where in_customers_feed) from core.dim_customers") == 0

    # recency and frequency alone still predict churn: v1 trained, promoted, and scoring the latest as-of date
    assert registry.registry_state(MODEL) == [{"version": "1", "stage": "Production", "aliases": ["production"]}]
    client = mlflow.MlflowClient()
    run = client.get_run(client.get_model_version(MODEL, "1").run_id)
    assert run.data.metrics["test_roc_auc"] > 0.7
    # the features of the missing feeds are recorded as carrying no information; the order features all vary
    without = set(run.data.params["uninformative_features"].split(","))
    assert {"tickets_90d", "sessions_7d", "sessions_30d", "sessions_trend_30d", "pages_30d",
            "days_since_last_session", "region"} <= without
    assert without.isdisjoint({"recency_days", "tenure_days", "orders_90d", "amount_90d", "avg_order_value"})
    assert "Without information in the training rows" in mlflow.artifacts.load_text(
        f"runs:/{run.info.run_id}/model_card.md")
    latest = features[features["as_of_date"] == features["as_of_date"].max()]
    scored = query(warehouse, "select model_version, as_of_date, count(distinct customer_id) as n from ml.predictions"
                              " group by 1, 2")
    assert scored.values.tolist() == [["1", latest["as_of_date"].iloc[0], len(latest)]]
