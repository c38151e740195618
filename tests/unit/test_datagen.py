import filecmp

import numpy as np
import pandas as pd
import pytest

from mlscale.data.contract import load_contract
from mlscale.local.datagen import (FEEDS, ORDER_ID_STRIDE, DirtyData, Drift, ShopParams, generate, population,
                             read_landing)

SMALL = ShopParams(customers=300, days=60, seed=3)


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*.csv"))


def test_same_seed_same_files(tmp_path):
    generate(SMALL, tmp_path / "a")
    generate(SMALL, tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", [str(p) for p in _files(tmp_path / "a")], shallow=False)
    assert mismatch == [] and errors == []


def test_other_seed_other_shop(tmp_path):
    generate(SMALL, tmp_path / "a")
    generate(ShopParams(customers=300, days=60, seed=4), tmp_path / "b")
    assert not read_landing(tmp_path / "a", "orders").equals(read_landing(tmp_path / "b", "orders"))


def test_a_range_of_days_is_the_same_as_those_days_of_the_whole(tmp_path):
    generate(SMALL, tmp_path / "all")
    generate(SMALL, tmp_path / "part", days=range(20, 30))
    part = _files(tmp_path / "part")
    assert part and all(str(p).split("/")[1] >= "dt=2026-01-21" for p in part)
    _, mismatch, _ = filecmp.cmpfiles(tmp_path / "all", tmp_path / "part", [str(p) for p in part], shallow=False)
    assert mismatch == []


def test_every_feed_follows_the_contract(tmp_path):
    contract = load_contract()
    assert set(FEEDS) == set(contract)
    generate(SMALL, tmp_path)
    for feed in FEEDS:
        first = next((tmp_path / feed).rglob("*.csv"))
        # every column of the contract but deleted_at (a source database's soft delete; files never delete)
        header = first.read_text().splitlines()[0].split(",")
        assert header == [c for c in contract[feed].column_names if c != "deleted_at"], feed
    orders = read_landing(tmp_path, "orders")
    customers = read_landing(tmp_path, "customers")
    assert orders["order_id"].is_unique
    assert set(orders["customer_id"]) <= set(customers["customer_id"])
    items = read_landing(tmp_path, "order_items")
    line_sum = (items["quantity"].astype(int) * items["unit_price"].astype(float)).groupby(items["order_id"]).sum()
    amounts = orders.set_index("order_id")["amount"].astype(float)
    assert (line_sum.reindex(amounts.index) - amounts).abs().max() < 0.05


def test_orders_land_on_their_day_and_after_signup(tmp_path):
    generate(SMALL, tmp_path)
    for path in (tmp_path / "orders").rglob("*.csv"):
        frame = pd.read_csv(path, dtype=str)
        assert frame["ordered_at"].str.startswith(path.parent.name.removeprefix("dt=")).all()
    pop = population(SMALL)
    orders = read_landing(tmp_path, "orders")
    signup = dict(zip(pop.customer_id, pop.signup_day))
    day = (pd.to_datetime(orders["ordered_at"]).dt.tz_localize(None) - pd.Timestamp(SMALL.start)).dt.days
    assert (day.to_numpy() >= orders["customer_id"].astype(int).map(signup).to_numpy()).all()


def test_optional_attributes_are_sparse():
    pop = population(ShopParams(customers=4000, days=60, seed=1, sparse_share=0.4))
    for attr in ("country", "birth_year", "channel"):
        share = pd.isna(pd.Series(getattr(pop, attr))).mean()
        assert 0.35 < share < 0.45, (attr, share)


def test_only_the_chosen_feeds_are_written(tmp_path):
    generate(ShopParams(customers=100, days=20, seed=2, feeds=("orders",)), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders"]
    with pytest.raises(ValueError, match="unknown feed"):
        generate(ShopParams(feeds=("orders", "invoices")), tmp_path)


def test_dirty_data_knobs(tmp_path):
    clean_dir, dirty_dir = tmp_path / "clean", tmp_path / "dirty"
    clean = generate(SMALL, clean_dir)
    dirty = DirtyData(duplicate_rows=0.05, redelivered_files=0.2, late_rows=0.1, malformed_rows=0.02,
                      extra_column=True, null_flood_day=30)
    stats = generate(ShopParams(customers=300, days=60, seed=3, dirty=dirty), dirty_dir)
    assert stats.duplicate_rows > 0 and stats.malformed_rows > 0 and stats.redelivered_files > 0
    assert stats.rows["orders"] == clean.rows["orders"] + stats.duplicate_rows - stats.late_rows
    redelivered = list((dirty_dir / "orders").rglob("orders_redelivery_of_*.csv"))
    assert len(redelivered) == stats.redelivered_files
    original = dirty_dir / "orders" / f"dt={redelivered[0].stem.removeprefix('orders_redelivery_of_')}" / "orders.csv"
    assert redelivered[0].read_bytes() == original.read_bytes()
    day30 = pd.read_csv(dirty_dir / "orders" / "dt=2026-01-31" / "orders.csv", dtype=str, keep_default_na=False,
                        on_bad_lines="skip")
    assert "coupon_code" in day30.columns
    assert (day30["channel"] == "").mean() > 0.8
    # Late rows: an order of an earlier day travels in a later day's file.
    orders = read_landing(clean_dir, "orders")
    late = []
    for path in (dirty_dir / "orders").glob("dt=*/orders.csv"):
        frame = pd.read_csv(path, dtype=str, on_bad_lines="skip")
        late.append((~frame["ordered_at"].str.startswith(path.parent.name.removeprefix("dt="))).sum())
    assert sum(late) > 0.05 * len(orders)


def test_data_drift_raises_prices_from_its_day_and_changes_nothing_else(tmp_path):
    drifted = ShopParams(customers=300, days=60, seed=3, drift=Drift(data_drift_day=40, price_increase=0.5))
    generate(SMALL, tmp_path / "a")
    generate(drifted, tmp_path / "b")
    before, after = read_landing(tmp_path / "a", "order_items"), read_landing(tmp_path / "b", "order_items")
    assert before[["order_id", "line_no", "product_id", "quantity"]].equals(after[["order_id", "line_no", "product_id", "quantity"]])
    day = before["order_id"].astype(int) // ORDER_ID_STRIDE
    ratio = after["unit_price"].astype(float) / before["unit_price"].astype(float)
    assert (ratio[day < 40] == 1).all()
    assert ratio[day >= 40].between(1.49, 1.51).all()  # prices are rounded to cents


def test_concept_drift_ends_frequent_buyers_lifetimes_abruptly_after_its_day():
    calm = population(SMALL)
    shifted = population(ShopParams(customers=300, days=60, seed=3, drift=Drift(concept_drift_day=30)))
    frequent = calm.order_rate > np.quantile(calm.order_rate, 2 / 3)
    lured = frequent & (calm.end_day > 30)
    assert (shifted.abrupt == lured).all() and lured.sum() > 30
    assert (shifted.end_day[lured] <= calm.end_day[lured]).all()
    assert (shifted.end_day[lured] > np.maximum(calm.signup_day[lured], 30)).all()  # they leave after the drift day
    assert (shifted.end_day[~lured] == calm.end_day[~lured]).all()
    assert (shifted.end_day[lured] < calm.end_day[lured]).mean() > 0.5  # most of them leave sooner
