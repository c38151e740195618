"""Only the mandatory orders feed arrives: the warehouse, features, training, promotion and scoring still work."""

import pytest

from mlscale import registry, scoring, training
from mlscale.datagen import ShopParams, generate
from mlscale.ingest import ingest_landing
from mlscale.specs import load_specs
from tests.helpers import dbt, drop_registered_model, query

pytestmark = pytest.mark.integration


def test_orders_only_chain(warehouse):
    generate(ShopParams(customers=2000, days=270, seed=12, feeds=("orders",)), warehouse.landing_dir)
    loaded = ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert loaded["customers"]["files_loaded"] == 0 and loaded["orders"]["rows_loaded"] > 0
    dbt(warehouse, "build")

    features = query(warehouse, "select * from ml.customer_features")
    assert len(features) > 1000
    assert set(features["region"]) == {"unknown"} and features["is_imputed_channel"].all()
    assert (features["sessions_30d"] == 0).all() and (features["tickets_90d"] == 0).all()

    spec = load_specs()["churn_90d"]
    drop_registered_model(warehouse, spec.name)
    trained = training.train(warehouse, spec)
    assert trained["metrics"]["roc_auc"] > 0.7  # recency and frequency alone still predict churn
    decision = registry.promote(warehouse, spec)
    assert (decision.decision, decision.stage) == ("promoted", "Production")
    scored = scoring.score(warehouse, spec)
    assert scored["rows"] == int((features["as_of_date"] == features["as_of_date"].max()).sum())
