"""Deterministic synthetic shop, streamed to daily landing files one day at a time.

Every customer has a hidden lifetime; they order, browse and open tickets while it lasts, and
their engagement fades in its last weeks, so recency, frequency, sessions and tickets all carry
churn signal. Each day is drawn from its own random stream (seed, day), so any range of days can
be (re)generated on its own and memory stays bounded by one day's rows plus one row per customer.
Knobs in `DirtyData` add the problems real deliveries have; knobs in `Drift` change the world
at a given day (data drift: prices rise; concept drift: the drivers of churn change).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

FEEDS = ("customers", "orders", "order_items", "products", "support_tickets", "web_sessions")
COUNTRIES = np.array(["DE", "FR", "NL", "ES", "IT", "PL", "SE", "AT", "US", "CA", "BR", "JP", "AU"])
CHANNELS = np.array(["organic", "paid_search", "paid_social", "referral", "email"])
CHANNEL_P = [0.35, 0.25, 0.2, 0.1, 0.1]
# Mean customer lifetime in days per acquisition channel: where a customer came from matters.
CHANNEL_LIFETIME = np.array([260.0, 200.0, 110.0, 320.0, 230.0])
ORDER_CHANNELS = np.array(["web", "app", "store"])
CATEGORIES = np.array(["books", "electronics", "garden", "fashion", "toys", "food", "beauty", "sports"])
TICKET_TOPICS = np.array(["delivery", "billing", "product", "returns", "other"])
DEVICES = np.array(["desktop", "mobile", "tablet"])
N_PRODUCTS = 300
ORDER_ID_STRIDE = 10_000_000  # order_id = day * stride + n: unique and stable whatever range is generated
FADE_DAYS = 45  # engagement fades over a customer's last FADE_DAYS days


@dataclass(frozen=True)
class DirtyData:
    """What goes wrong in deliveries; all off by default."""

    duplicate_rows: float = 0.0  # share of order rows repeated within their file
    redelivered_files: float = 0.0  # share of daily order files delivered again, byte for byte, a day later
    late_rows: float = 0.0  # share of orders that arrive in the file of 1-3 days after their order day
    malformed_rows: float = 0.0  # share of order rows that are broken (not a number, a field missing)
    extra_column: bool = False  # order files carry a column the contract does not know
    null_flood_day: int | None = None  # on this day 95% of orders have no sales channel
    customer_updates: float = 0.02  # share of customers re-delivered later with a changed attribute


@dataclass(frozen=True)
class Drift:
    """How the world changes; all off by default. Days count from the shop's start."""

    # Data drift: from this day, prices are higher by price_increase (0.3 = +30%), and the feature
    # distributions that follow spend (amounts, average order value) shift; churn does not change.
    data_drift_day: int | None = None
    price_increase: float = 0.3
    # Concept drift: from this day, a competitor wins the most frequent buyers (the top third by order
    # rate): each of them still active, and each who signs up later, leaves after a while (mean
    # competitor_days) and abruptly, without the fading engagement that announced churn so far. A model
    # trained before the day ranks them as the most loyal; one trained on later labels learns otherwise.
    concept_drift_day: int | None = None
    competitor_days: float = 60.0


@dataclass(frozen=True)
class ShopParams:
    """Size and shape of the generated shop."""

    customers: int = 3000
    days: int = 300
    start: date = date(2026, 1, 1)
    seed: int = 42
    sparse_share: float = 0.4  # share of customers missing each optional attribute
    feeds: tuple[str, ...] = FEEDS
    dirty: DirtyData = field(default_factory=DirtyData)
    drift: Drift = field(default_factory=Drift)

    def day(self, d: int) -> date:
        return self.start + timedelta(days=d)


@dataclass
class Population:
    """One row per customer: visible attributes and the hidden behaviour that drives them."""

    customer_id: np.ndarray
    signup_day: np.ndarray
    end_day: np.ndarray  # first day after the customer's lifetime
    order_rate: np.ndarray
    items_mean: np.ndarray
    session_rate: np.ndarray
    country: np.ndarray
    birth_year: np.ndarray
    channel: np.ndarray
    abrupt: np.ndarray  # leaves without fading engagement first (concept drift)


def population(params: ShopParams) -> Population:
    """The customers; signups spread over the first 80% of the window, more of them early."""
    rng = np.random.default_rng([params.seed, 0])
    n = params.customers
    signup = np.floor(rng.beta(1.2, 1.8, n) * params.days * 0.8).astype(np.int32)
    channel_idx = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
    lifetime = rng.exponential(CHANNEL_LIFETIME[channel_idx])
    pop = Population(
        customer_id=np.arange(1, n + 1, dtype=np.int64),
        signup_day=signup,
        end_day=(signup + np.maximum(lifetime, 1)).astype(np.int32),
        order_rate=np.minimum(rng.lognormal(np.log(1 / 12), 0.5, n), 0.5),
        items_mean=rng.gamma(2.0, 0.6, n),
        session_rate=np.minimum(rng.lognormal(np.log(0.15), 0.6, n), 0.9),
        country=_sparse(rng, rng.choice(COUNTRIES, n), params.sparse_share),
        birth_year=_sparse(rng, rng.integers(1950, 2006, n), params.sparse_share),
        channel=_sparse(rng, CHANNELS[channel_idx], params.sparse_share),
        abrupt=np.zeros(n, dtype=bool),
    )
    if params.drift.concept_drift_day is not None:
        _competitor(pop, params)
    return pop


def _competitor(pop: Population, params: ShopParams) -> None:
    """Concept drift: frequent buyers alive at (or signing up after) the drift day leave soon, abruptly."""
    rng = np.random.default_rng([params.seed, 4])
    day = params.drift.concept_drift_day
    frequent = pop.order_rate > np.quantile(pop.order_rate, 2 / 3)
    lured = frequent & (pop.end_day > day)
    start = np.maximum(pop.signup_day, day)
    leave = (start + 1 + rng.exponential(params.drift.competitor_days, len(start))).astype(np.int32)
    pop.end_day = np.where(lured, np.minimum(pop.end_day, leave), pop.end_day)
    pop.abrupt = lured


def _sparse(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    out = values.astype(object)
    out[rng.random(len(values)) < share] = None
    return out


def products(params: ShopParams) -> pd.DataFrame:
    """The product catalogue (delivered once, on day 0)."""
    rng = np.random.default_rng([params.seed, 1])
    return pd.DataFrame({
        "product_id": np.arange(1, N_PRODUCTS + 1),
        "category": rng.choice(CATEGORIES, N_PRODUCTS),
        "unit_price": np.round(rng.lognormal(np.log(18), 0.7, N_PRODUCTS), 2),
    })


def _fade(pop: Population, d: int, idx: np.ndarray) -> np.ndarray:
    """1 while a customer is engaged, falling to 0.2 over the last FADE_DAYS of their lifetime
    (except for those who leave abruptly)."""
    left = (pop.end_day[idx] - d).astype(float)
    return np.where(pop.abrupt[idx], 1.0, np.clip(0.2 + 0.8 * left / FADE_DAYS, 0.2, 1.0))


def _timestamps(rng: np.random.Generator, day: date, n: int) -> pd.Series:
    seconds = rng.integers(6 * 3600, 23 * 3600, n)
    ts = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(np.sort(seconds), unit="s")
    return pd.Series(ts.strftime("%Y-%m-%dT%H:%M:%S+00:00"))


def simulate_day(params: ShopParams, pop: Population, catalogue: pd.DataFrame, d: int) -> dict[str, pd.DataFrame]:
    """Everything that happens on day `d` (before delivery problems)."""
    rng = np.random.default_rng([params.seed, 2, d])
    day = params.day(d)
    active = np.flatnonzero((pop.signup_day <= d) & (d < pop.end_day))
    fade = _fade(pop, d, active)
    ordering = (rng.random(len(active)) < pop.order_rate[active] * fade) | (pop.signup_day[active] == d)
    buyers = active[ordering]
    n = len(buyers)
    order_ids = d * ORDER_ID_STRIDE + np.arange(1, n + 1)
    n_items = 1 + rng.poisson(pop.items_mean[buyers])
    line_order = np.repeat(np.arange(n), n_items)
    product_idx = rng.zipf(1.3, len(line_order)) % N_PRODUCTS
    quantity = 1 + rng.poisson(0.3, len(line_order))
    price = catalogue["unit_price"].to_numpy()[product_idx] * rng.uniform(0.85, 1.0, len(line_order))
    if params.drift.data_drift_day is not None and d >= params.drift.data_drift_day:
        price = price * (1 + params.drift.price_increase)
    line_amount = np.round(price, 2) * quantity
    amounts = np.round(np.bincount(line_order, weights=line_amount, minlength=n), 2)
    order_channel = ORDER_CHANNELS[rng.choice(3, n, p=[0.55, 0.35, 0.1])].astype(object)
    if params.dirty.null_flood_day == d:
        order_channel[rng.random(n) < 0.95] = None
    orders = pd.DataFrame({
        "order_id": order_ids,
        "customer_id": pop.customer_id[buyers],
        "ordered_at": _timestamps(rng, day, n),
        "amount": amounts,
        "channel": order_channel,
    })
    items = pd.DataFrame({
        "order_id": order_ids[line_order],
        "line_no": np.arange(len(line_order)) - np.repeat(np.cumsum(n_items) - n_items, n_items) + 1,
        "product_id": catalogue["product_id"].to_numpy()[product_idx],
        "quantity": quantity,
        "unit_price": np.round(price, 2),
    })

    # Support tickets: rare, and more likely in a customer's last weeks.
    ticket_p = 0.002 + 0.02 * (1 - fade)
    askers = active[rng.random(len(active)) < ticket_p]
    tickets = pd.DataFrame({
        "ticket_id": d * ORDER_ID_STRIDE + np.arange(1, len(askers) + 1),
        "customer_id": pop.customer_id[askers],
        "created_at": _timestamps(rng, day, len(askers)),
        "topic": rng.choice(TICKET_TOPICS, len(askers)),
        "satisfaction": _sparse(rng, rng.integers(1, 6, len(askers)), 0.5),
    })

    # Web sessions: engagement fades before a customer leaves, and lingers a little after.
    recent = np.flatnonzero((pop.signup_day <= d) & (d < pop.end_day + 30))
    s_fade = np.where(d < pop.end_day[recent], _fade(pop, d, recent), 0.1)
    browsers = recent[rng.random(len(recent)) < pop.session_rate[recent] * s_fade]
    sessions = pd.DataFrame({
        "session_id": d * ORDER_ID_STRIDE + np.arange(1, len(browsers) + 1),
        "customer_id": pop.customer_id[browsers],
        "started_at": _timestamps(rng, day, len(browsers)),
        "pages": 1 + rng.poisson(4, len(browsers)),
        "device": _sparse(rng, rng.choice(DEVICES, len(browsers)), 0.2),
    })

    signups = np.flatnonzero(pop.signup_day == d)
    customers = _customer_rows(pop, signups, day)
    # A few customers are delivered again later with one attribute changed (moved, or a gap filled).
    updates = np.flatnonzero((pop.signup_day < d) & (rng.random(len(pop.customer_id)) < params.dirty.customer_updates / max(params.days, 1)))
    if len(updates):
        changed = _customer_rows(pop, updates, None, signup_days=pop.signup_day[updates], start=params.start)
        changed["country"] = rng.choice(COUNTRIES, len(updates))
        customers = pd.concat([customers, changed], ignore_index=True)
    return {"orders": orders, "order_items": items, "support_tickets": tickets, "web_sessions": sessions,
            "customers": customers}


def _customer_rows(pop: Population, idx: np.ndarray, day: date | None, signup_days=None, start=None) -> pd.DataFrame:
    if day is not None:
        signup = [day.isoformat()] * len(idx)
    else:
        signup = [(start + timedelta(days=int(s))).isoformat() for s in signup_days]
    return pd.DataFrame({
        "customer_id": pop.customer_id[idx],
        "signup_date": signup,
        "country": pop.country[idx],
        "birth_year": pop.birth_year[idx],
        "acquisition_channel": pop.channel[idx],
    })


@dataclass
class LandingStats:
    """What `generate` wrote."""

    files: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows written, including duplicates and broken rows
    late_rows: int = 0
    duplicate_rows: int = 0
    malformed_rows: int = 0
    redelivered_files: int = 0
    seconds: float = 0.0

    def add(self, feed: str, rows: int) -> None:
        self.files[feed] = self.files.get(feed, 0) + 1
        self.rows[feed] = self.rows.get(feed, 0) + rows


def _write(frame: pd.DataFrame, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(target)  # a reader never sees a half-written file


def _break_rows(rng: np.random.Generator, text: str, share: float) -> tuple[str, int]:
    """Damage a share of the data lines of a CSV text: a non-number amount or a missing field."""
    lines = text.split("\n")
    broken = 0
    for i in range(1, len(lines)):
        if lines[i] and rng.random() < share:
            fields = lines[i].split(",")
            if rng.random() < 0.5:
                fields[3] = "n/a"
            else:
                fields = fields[:-1]
            lines[i] = ",".join(fields)
            broken += 1
    return "\n".join(lines), broken


def generate(params: ShopParams, landing_dir: Path, days: range | None = None, progress_every: int = 30) -> LandingStats:
    """Write landing/<feed>/dt=YYYY-MM-DD/<feed>.csv for each day in `days` (default: all)."""
    t0 = time.monotonic()
    days = days if days is not None else range(params.days)
    unknown = set(params.feeds) - set(FEEDS)
    if unknown:
        raise ValueError(f"unknown feed(s) {sorted(unknown)}; known: {', '.join(FEEDS)}")
    pop = population(params)
    catalogue = products(params)
    dirty = params.dirty
    stats = LandingStats()
    if "products" in params.feeds and 0 in days:
        _write(catalogue, landing_dir / "products" / f"dt={params.day(0)}" / "products.csv")
        stats.add("products", len(catalogue))
    # Late rows of day d travel in a later file: start three days early so they are not lost.
    late_carry: dict[int, list[pd.DataFrame]] = {}
    for d in range(max(0, days.start - 3), days.stop):
        frames = simulate_day(params, pop, catalogue, d)
        rng = np.random.default_rng([params.seed, 3, d])
        orders = frames["orders"]
        if dirty.late_rows:
            late = rng.random(len(orders)) < dirty.late_rows
            delay = rng.integers(1, 4, len(orders))
            for k in (1, 2, 3):
                late_carry.setdefault(d + k, []).append(orders[late & (delay == k)])
            orders = orders[~late]
        orders = pd.concat([orders, *late_carry.pop(d, [])], ignore_index=True)
        if d not in days:
            continue
        if dirty.duplicate_rows:
            dup = orders[rng.random(len(orders)) < dirty.duplicate_rows]
            stats.duplicate_rows += len(dup)
            orders = pd.concat([orders, dup], ignore_index=True)
        if dirty.extra_column:
            orders = orders.assign(coupon_code=np.where(rng.random(len(orders)) < 0.1, "WELCOME10", ""))
        folder = f"dt={params.day(d)}"
        for feed in ("customers", "order_items", "support_tickets", "web_sessions"):
            if feed in params.feeds and len(frames[feed]):
                _write(frames[feed], landing_dir / feed / folder / f"{feed}.csv")
                stats.add(feed, len(frames[feed]))
        if "orders" in params.feeds:
            target = landing_dir / "orders" / folder / "orders.csv"
            text = orders.to_csv(index=False)
            if dirty.malformed_rows:
                text, broken = _break_rows(rng, text, dirty.malformed_rows)
                stats.malformed_rows += broken
            target.parent.mkdir(parents=True, exist_ok=True)
            target.with_name("orders.csv.tmp").write_text(text)
            target.with_name("orders.csv.tmp").replace(target)
            stats.add("orders", len(orders))
            if dirty.redelivered_files and rng.random() < dirty.redelivered_files:
                again = landing_dir / "orders" / f"dt={params.day(d + 1)}" / f"orders_redelivery_of_{params.day(d)}.csv"
                again.parent.mkdir(parents=True, exist_ok=True)
                again.write_text(text)
                stats.redelivered_files += 1
        if progress_every and (d - days.start + 1) % progress_every == 0:
            log.info("generated %d/%d days (%s orders so far)", d - days.start + 1, len(days), stats.rows.get("orders", 0))
    stats.late_rows = sum(len(f) for frames in late_carry.values() for f in frames)  # still in flight at the end
    stats.seconds = time.monotonic() - t0
    return stats


def read_landing(landing_dir: Path, feed: str) -> pd.DataFrame:
    """All delivered rows of `feed` as text (for tests and checks on small shops)."""
    files = sorted((landing_dir / feed).glob("dt=*/*.csv"))
    if not files:
        return pd.DataFrame()
    return pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files], ignore_index=True)
