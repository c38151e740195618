"""Only the mandatory orders feed arrives, with only its required columns (order id, customer, time, amount, as a
real orders log has them): ingest, warehouse, training, promotion and scoring still run through Airflow."""

import csv

import mlflow
import pytest

from mlscale import registry
from mlscale.airflow import dagrun
from mlscale.local.datagen import ShopParams, generate
from tests.helpers import drop_registered_model, one_configuration, query, scalar

pytestmark = pytest.mark.e2e
MODEL = "churn_90d"


# The lifetime columns and BG/NBD's features, which the shipped spec added for real orders logs.
LIFETIME = {"repeat_order_days", "first_to_last_order_days", "lifetime_orders", "lifetime_avg_order_value",
            "mean_order_gap_days", "last_order_gap_days"}


def _short_window_spec(data: dict) -> None:
    data["features"]["numeric"] = [c for c in data["features"]["numeric"] if c not in LIFETIME]
    del data["features"]["btyd"]
    data["baselines"] = data["baselines"][:1]
    one_configuration(data)


@pytest.fixture
def short_window_spec(spec_variant):
    """The shipped spec without the lifetime and BG/NBD features, judged against the recency rule only. On this
    generated orders-only shop BG/NBD ranks better than the model (ROC AUC 0.911 against 0.882: the generator's
    customers buy and lapse as BG/NBD assumes), and the model with the lifetime features loses to the recency
    rule too (0.889 against 0.900; 270 days are too short for the search's validation gap). This
    test is about the chain running on orders alone; tests/e2e/test_real_orders.py judges the model against
    BG/NBD on a real log, with the shipped search. Here the search is cut to ONE_CONFIGURATION (the test alone: 81 s
    against 89 s with the search)."""
    spec_variant(MODEL, _short_window_spec)


def test_orders_only_chain(warehouse, short_window_spec):
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
    assert registry.registry_state(warehouse, MODEL) == [{"version": "1", "stage": "Production", "aliases": ["production"]}]
    client = registry.client(warehouse)
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
