"""dbt builds the warehouse on real PostgreSQL, and the feature mart matches features computed by hand."""

import os
import subprocess
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from mlscale.datagen import ShopParams, generate, write_landing
from mlscale.ingest import ingest_landing
from mlscale.quality import DataQualityError, gate

pytestmark = pytest.mark.integration
PARAMS = ShopParams(customers=250, days=150, seed=5)


def _dbt_build(settings):
    dbt = Path(os.sys.executable).parent / "dbt"
    out = subprocess.run([str(dbt), "build", "--project-dir", str(settings.dbt_project_dir)],
                         env={**os.environ, **settings.service_env()}, capture_output=True, text=True,
                         cwd=settings.dbt_project_dir)
    assert out.returncode == 0, out.stdout[-4000:]
    return out.stdout


def _mart(settings) -> pd.DataFrame:
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        cur = conn.execute("select * from ml.customer_features order by as_of_date, customer_id")
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def _expected(orders: pd.DataFrame, as_of: pd.Timestamp, last_day: pd.Timestamp) -> pd.DataFrame:
    """Point-in-time features computed in pandas from the generated orders."""
    o = orders.assign(order_date=orders["ordered_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize())
    past = o[o["order_date"] < as_of]
    g = past.groupby("customer_id")
    exp = pd.DataFrame({
        "recency_days": (as_of - g["order_date"].max()).dt.days,
        "tenure_days": (as_of - g["order_date"].min()).dt.days,
        "orders_total": g.size(),
        "orders_30d": past[past["order_date"] >= as_of - pd.Timedelta(days=30)].groupby("customer_id").size(),
        "amount_total": g["amount"].sum(),
    }).fillna({"orders_30d": 0})
    exp = exp[exp["recency_days"] <= 180]
    future = o[(o["order_date"] >= as_of) & (o["order_date"] < as_of + pd.Timedelta(days=90))]
    matured = as_of + pd.Timedelta(days=90) <= last_day
    exp["churned_90d"] = (~exp.index.isin(future["customer_id"])).astype(float) if matured else float("nan")
    return exp


def test_feature_mart_is_point_in_time_correct(warehouse):
    shop = generate(PARAMS)
    write_landing(shop, warehouse.landing_dir, PARAMS.start)
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    log = _dbt_build(warehouse)
    assert "ERROR=0" in log

    mart = _mart(warehouse)
    first_day = pd.Timestamp(PARAMS.start)
    last_day = first_day + pd.Timedelta(days=int(shop.orders["day"].max()))
    as_of_dates = sorted(pd.to_datetime(mart["as_of_date"].unique()))
    assert as_of_dates[0] == first_day + pd.Timedelta(days=28)
    assert all((b - a).days == 7 for a, b in zip(as_of_dates, as_of_dates[1:]))

    for as_of in (as_of_dates[0], as_of_dates[len(as_of_dates) // 2], as_of_dates[-1]):
        got = mart[pd.to_datetime(mart["as_of_date"]) == as_of].set_index("customer_id").sort_index()
        exp = _expected(shop.orders, as_of, last_day).sort_index()
        assert got.index.tolist() == exp.index.tolist(), as_of
        for col in ("recency_days", "tenure_days", "orders_total", "orders_30d"):
            assert got[col].astype(int).tolist() == exp[col].astype(int).tolist(), (as_of, col)
        assert got["amount_total"].astype(float).round(2).tolist() == exp["amount_total"].round(2).tolist()
        assert got["churned_90d"].astype(float).fillna(-1).tolist() == exp["churned_90d"].fillna(-1).tolist()

    # Attributes of the optional customers feed reach the mart.
    assert mart["acquisition_channel"].notna().any()


def test_quality_gate_stops_a_null_flood(warehouse):
    shop = generate(PARAMS)
    write_landing(shop, warehouse.landing_dir, PARAMS.start, feeds=("orders",))
    ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert gate(warehouse, "raw_orders", "t-ok")["failed_critical"] == 0
    with psycopg.connect(warehouse.dsn(warehouse.warehouse_db)) as conn:
        conn.execute("update raw.orders set customer_id = null where order_id % 3 = 0")
    with pytest.raises(DataQualityError, match=r"expect_column_values_to_not_be_null \{'column': 'customer_id'\}"):
        gate(warehouse, "raw_orders", "t-flood")
    with psycopg.connect(warehouse.dsn(warehouse.warehouse_db)) as conn:
        row = conn.execute(
            "select success, unexpected_count from ops.dq_results where run_id = 't-flood'"
            " and expectation = 'expect_column_values_to_not_be_null' and kwargs->>'column' = 'customer_id'"
        ).fetchone()
    assert row == (False, len(shop.orders) // 3)
