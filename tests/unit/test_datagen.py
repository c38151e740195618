from datetime import date

import pandas as pd

from mlscale.contract import load_contract
from mlscale.datagen import ShopParams, generate, write_landing

SMALL = ShopParams(customers=300, days=120, seed=3)


def test_same_seed_same_shop():
    a, b = generate(SMALL), generate(SMALL)
    pd.testing.assert_frame_equal(a.orders, b.orders)
    pd.testing.assert_frame_equal(a.customers, b.customers)


def test_other_seed_other_shop():
    a, b = generate(SMALL), generate(ShopParams(customers=300, days=120, seed=4))
    assert not a.orders["amount"].equals(b.orders["amount"])


def test_orders_are_consistent_with_customers():
    shop = generate(SMALL)
    assert shop.customers["customer_id"].is_unique
    assert shop.orders["order_id"].tolist() == list(range(1, len(shop.orders) + 1))
    signup = shop.customers.set_index("customer_id")["day"]
    assert (shop.orders["day"].to_numpy() >= signup.loc[shop.orders["customer_id"]].to_numpy()).all()
    assert shop.orders["day"].between(0, SMALL.days - 1).all()
    assert (shop.orders["amount"] > 0).all()
    # every customer orders on the signup day
    assert set(shop.orders["customer_id"]) == set(shop.customers["customer_id"])


def test_optional_attributes_are_sparse():
    shop = generate(ShopParams(customers=2000, days=120, seed=1, sparse_share=0.4))
    for col in ("country", "birth_year", "acquisition_channel"):
        share = shop.customers[col].isna().mean()
        assert 0.35 < share < 0.45, (col, share)


def test_landing_files_follow_the_contract(tmp_path):
    shop = generate(SMALL)
    written = write_landing(shop, tmp_path, SMALL.start)
    contract = load_contract()
    assert written["orders"] == shop.orders["day"].nunique()
    first = tmp_path / "orders" / f"dt={SMALL.start.isoformat()}" / "orders.csv"
    header = first.read_text().splitlines()[0].split(",")
    assert header == contract["orders"].column_names
    frame = pd.read_csv(first)
    assert len(frame) == (shop.orders["day"] == 0).sum()
    assert frame["ordered_at"].str.startswith(SMALL.start.isoformat()).all()
    assert not list(tmp_path.rglob("*.tmp"))
    customers_header = next((tmp_path / "customers").rglob("*.csv")).read_text().splitlines()[0].split(",")
    assert customers_header == contract["customers"].column_names
    assert date.fromisoformat(first.parent.name.removeprefix("dt=")) == SMALL.start
