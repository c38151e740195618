"""Real public orders logs that packages on the registry ship, delivered through the landing contract.

The CDNOW log (Fader & Hardie): every purchase of the 23,570 customers who first bought at the online
music shop CDNOW in the first quarter of 1997, up to the end of June 1998 (69,659 purchases). It ships
with `lifetimes` (installed for its test data only, never imported). Each line is a customer's purchase
day, CDs bought and dollars spent; there is no order id or time of day, so a delivered order gets the
line number as its id and noon UTC of its day as its time. Delivered as the orders feed only, one file per
purchase day, it is what a real orders log looks like to the bundle: four columns, no attributes, no web
sessions, no tickets.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

def cdnow_path() -> Path:
    """CDNOW_master.txt inside the installed `lifetimes` package (located, not imported)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the CDNOW log ships with the `lifetimes` package: pip install -r requirements.lock")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "CDNOW_master.txt"


def cdnow(customer_share: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """The CDNOW master log as orders (order_id, customer_id, ordered_at, amount), all customers or a seeded
    random share of them (with all of their purchases)."""
    if not 0 < customer_share <= 1:
        raise ValueError(f"customer_share must be in (0, 1], got {customer_share}")
    log = pd.read_csv(cdnow_path(), sep=r"\s+", header=0, names=["customer_id", "date", "cds", "amount"],
                      dtype={"customer_id": "int64", "date": str, "cds": "int64", "amount": "float64"})
    log.insert(0, "order_id", np.arange(1, len(log) + 1, dtype="int64"))
    if customer_share < 1:
        ids = log["customer_id"].unique()
        keep = np.random.default_rng(seed).choice(ids, size=round(customer_share * len(ids)), replace=False)
        log = log[log["customer_id"].isin(keep)]
    log["ordered_at"] = pd.to_datetime(log["date"], format="%Y%m%d").dt.strftime("%Y-%m-%dT12:00:00+00:00")
    return log[["order_id", "customer_id", "ordered_at", "amount"]].reset_index(drop=True)


@dataclass(frozen=True)
class Delivered:
    files: int
    orders: int
    customers: int
    first_day: str
    last_day: str


def deliver_orders(orders: pd.DataFrame, landing_dir: Path) -> Delivered:
    """Write `orders` as the orders feed: landing/orders/dt=<day>/orders.csv, one file per order day."""
    day = orders["ordered_at"].str.slice(0, 10)
    for value, part in orders.groupby(day, sort=True):
        folder = landing_dir / "orders" / f"dt={value}"
        folder.mkdir(parents=True, exist_ok=True)
        part.to_csv(folder / "orders.csv", index=False, float_format="%.2f")
    return Delivered(files=int(day.nunique()), orders=len(orders), customers=int(orders["customer_id"].nunique()),
                     first_day=str(day.min()), last_day=str(day.max()))
