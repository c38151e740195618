"""Deterministic synthetic shop: customers and their orders, written as daily landing files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT", "PL", "SE", "AT"])
CHANNELS = np.array(["organic", "paid_search", "paid_social", "referral", "email"])
# Mean customer lifetime in days per acquisition channel: where a customer came from matters.
CHANNEL_LIFETIME = {"organic": 260.0, "paid_search": 200.0, "paid_social": 110.0, "referral": 320.0, "email": 230.0}


@dataclass(frozen=True)
class ShopParams:
    """Size and shape of the generated shop."""

    customers: int = 3000
    days: int = 300
    start: date = date(2026, 1, 1)
    seed: int = 42
    sparse_share: float = 0.4  # share of customers missing each optional attribute


@dataclass(frozen=True)
class Shop:
    customers: pd.DataFrame
    orders: pd.DataFrame


def generate(params: ShopParams) -> Shop:
    """Build the shop in memory; the same params always give the same rows."""
    rng = np.random.default_rng(params.seed)
    n = params.customers
    ids = np.arange(1, n + 1)
    # Signups spread over the first 80% of the window, more of them early on.
    signup_day = np.floor(rng.beta(1.2, 1.8, n) * params.days * 0.8).astype(int)
    channel = rng.choice(CHANNELS, n, p=[0.35, 0.25, 0.2, 0.1, 0.1])
    country = rng.choice(COUNTRIES, n)
    birth_year = rng.integers(1950, 2006, n)
    lifetime = rng.exponential(np.vectorize(CHANNEL_LIFETIME.get)(channel))
    rate = rng.lognormal(np.log(1 / 12), 0.5, n)  # orders per day while active
    spend = rng.lognormal(np.log(45), 0.4, n)  # typical basket per customer

    active_from = signup_day.astype(float)
    active_to = np.minimum(signup_day + lifetime, params.days)
    n_orders = rng.poisson(rate * (active_to - active_from)) + 1  # everyone orders on signup day
    cust_idx = np.repeat(np.arange(n), n_orders)
    first = np.zeros(len(cust_idx), dtype=bool)
    first[np.cumsum(n_orders) - n_orders] = True
    offset = rng.uniform(0, 1, len(cust_idx)) * (active_to - active_from)[cust_idx]
    order_day = np.where(first, active_from[cust_idx], active_from[cust_idx] + offset)
    # Signup-day orders land at a daytime hour; later orders keep the fraction of their day.
    seconds = np.where(first, rng.integers(8 * 3600, 22 * 3600, len(cust_idx)), np.floor((order_day % 1) * 86400))
    day = np.floor(order_day).astype(int)
    amount = np.round(rng.lognormal(np.log(spend[cust_idx]), 0.35), 2)

    ts = pd.Timestamp(params.start, tz="UTC") + pd.to_timedelta(day, unit="D") + pd.to_timedelta(seconds, unit="s")
    orders = pd.DataFrame({"customer_id": ids[cust_idx], "ordered_at": ts, "amount": amount, "day": day})
    orders = orders[orders["day"] < params.days].sort_values(["ordered_at", "customer_id"], kind="stable")
    orders.insert(0, "order_id", np.arange(1, len(orders) + 1))

    def sparse(values: np.ndarray) -> np.ndarray:
        out = values.astype(object)
        out[rng.uniform(0, 1, n) < params.sparse_share] = None
        return out

    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": [params.start + timedelta(days=int(d)) for d in signup_day],
            "country": sparse(country),
            "birth_year": sparse(birth_year),
            "acquisition_channel": sparse(channel),
            "day": signup_day,
        }
    )
    return Shop(customers=customers, orders=orders.reset_index(drop=True))


def write_landing(shop: Shop, landing_dir: Path, start: date, feeds: tuple[str, ...] = ("orders", "customers")) -> dict[str, int]:
    """Write one CSV per feed per day under landing/<feed>/dt=YYYY-MM-DD/; return files written per feed."""
    written: dict[str, int] = {}
    frames = {"orders": shop.orders, "customers": shop.customers}
    for feed in feeds:
        frame = frames[feed]
        count = 0
        for day, rows in frame.groupby("day", sort=True):
            folder = landing_dir / feed / f"dt={(start + timedelta(days=int(day))).isoformat()}"
            folder.mkdir(parents=True, exist_ok=True)
            out = rows.drop(columns="day")
            if "ordered_at" in out:
                out = out.assign(ordered_at=out["ordered_at"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
            target = folder / f"{feed}.csv"
            tmp = target.with_suffix(".csv.tmp")
            out.to_csv(tmp, index=False)
            tmp.replace(target)  # a reader never sees a half-written file
            count += 1
        written[feed] = count
        log.info("wrote %d %s files under %s", count, feed, landing_dir / feed)
    return written
