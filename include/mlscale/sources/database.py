"""An operational SQL database as a source: incremental extraction into raw.* on an updated_at cursor.

The source is reached through the Airflow connection's own hook (`Connection.get_hook()`: MySqlHook for
MySQL/MariaDB, SqliteHook for SQLite, any DbApiHook of the common-sql family), so credentials live in Airflow
Connections. Each table is read in pages ordered by (cursor column, key), from the committed cursor minus the
overlap; each page becomes one delivery in the feed's CSV format and goes through `ingest.load_delivery`
(contract, quarantine, ledger) in one PostgreSQL transaction that also moves the cursor.

`write_shop` is the other side, for the demo and the tests: the generated shop written into such a database the
way an application writes it (inserts, later updates, soft deletes, each stamping updated_at).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pandas as pd
from psycopg.types.json import Jsonb

from mlscale import ops, postgres
from mlscale.config import Settings
from mlscale.data.contract import Feed, load_contract
from mlscale.data.ingest import ensure_tables
from mlscale.sources import ExtractFailed, Source, SourceUnavailable, TableSpec, connection, load_batch

log = logging.getLogger(__name__)

# How the source is asked for a cursor value: a text both MySQL's DATETIME(6) and SQLite's text compare right.
CURSOR_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass
class TableResult:
    table: str
    feed: str
    batches: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    cursor: str | None = None


def _utc(value) -> datetime:
    """A cursor or timestamp value as the source returns it (a naive UTC datetime from MySQL, text from SQLite)."""
    ts = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _timestamp_text(value) -> str:
    if isinstance(value, datetime) and value.tzinfo is None:  # MySQL's DATETIME, in UTC by the source's contract
        return value.isoformat() + "+00:00"
    return _utc(value).isoformat()


def _plain_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _writers(feed: Feed, columns: list[str]) -> list:
    """For each column, how its source value is written in a CSV field as the landing contract reads it."""
    types = {c.name: c.type for c in feed.columns}
    return [_timestamp_text if types[c] == "timestamptz" else _plain_text for c in columns]


def hook_for(settings: Settings, src: Source):
    """The DB-API hook of the source's connection."""
    return connection(settings, src.connection).get_hook()


def _columns(cur, table: str, feed: Feed, spec: TableSpec) -> list[str]:
    """The feed's columns the source table has (every required one, or ExtractFailed naming those missing)."""
    cur.execute(f"select * from {table} where 1 = 0")
    have = {d[0].lower() for d in cur.description}
    missing = [c for c in [*feed.required_columns, spec.cursor] if c not in have]
    if missing:
        raise ExtractFailed(f"source table {table} lacks column(s) {', '.join(missing)} of feed {feed.name} "
                            f"(columns: {', '.join(sorted(have))}); rename them in a view and extract the view")
    return [c for c in feed.column_names if c in have]


def _page_query(table: str, columns: list[str], spec: TableSpec, key: tuple[str, ...], placeholder: str,
                after_key: bool, limit: int) -> str:
    order = ", ".join([spec.cursor, *key])
    if after_key:  # strictly after the last row read: (cursor, key) > (last cursor, last key)
        where = f"({order}) > ({', '.join([placeholder] * (1 + len(key)))})"
    else:
        where = f"{spec.cursor} >= {placeholder}"
    return (f"select {', '.join([*columns, spec.cursor])} from {table} where {where} "
            f"order by {order} limit {int(limit)}")


def _batch_csv(feed: Feed, columns: list[str], rows: list[tuple]) -> bytes:
    writers = _writers(feed, columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else write(v) for write, v in zip(writers, row)] for row in rows])
    return out.getvalue().encode()


def _load_page(conn, src: Source, spec: TableSpec, feed: Feed, columns: list[str], rows: list[tuple]) -> tuple[int, int]:
    """One page of a table as deliveries in the caller's transaction, one per day of the cursor column (each row's
    delivery date is the day it changed at the source, as a daily file's would be); (rows loaded, quarantined)."""
    days: dict[date, list[tuple]] = {}
    for row in rows:
        days.setdefault(_utc(row[len(columns)]).date(), []).append(row)
    loaded = quarantined = 0
    conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"extract {src.name}.{spec.table}",))
    for day, day_rows in days.items():
        body = _batch_csv(feed, columns, [r[:len(columns)] for r in day_rows])
        label = (f"{src.name}:{spec.table} {spec.cursor} {_utc(day_rows[0][len(columns)]).isoformat()}.."
                 f"{_utc(day_rows[-1][len(columns)]).isoformat()}")
        res = load_batch(conn, feed, body, label, day)
        loaded += res.rows_loaded
        quarantined += res.rows_quarantined
    return loaded, quarantined


def _read_cursor(conn, src: Source, table: str) -> datetime | None:
    row = conn.execute("select cursor_value from ops.extract_cursors where source = %s and source_table = %s",
                       (src.name, table)).fetchone()
    return row[0] if row else None


def extract_table(settings: Settings, src: Source, spec: TableSpec, hook, full_refresh: bool = False) -> TableResult:
    """Load one source table's rows changed since its cursor (all of them with `full_refresh`) into raw.<feed>."""
    feed = load_contract()[spec.feed]
    result = TableResult(spec.table, spec.feed)
    source_conn = _source_connection(hook, src)
    try:
        cur = source_conn.cursor()
        columns = _columns(cur, spec.table, feed, spec)
        key = feed.key
        with postgres.warehouse(settings) as conn:
            with conn.transaction():
                committed = None if full_refresh else _read_cursor(conn, src, spec.table)
            start = datetime(1, 1, 1, tzinfo=timezone.utc)
            if committed is not None:
                start = committed - timedelta(minutes=src.overlap_minutes)
                log.info("%s.%s: from cursor %s minus the %d-minute overlap", src.name, spec.table,
                         committed.isoformat(), src.overlap_minutes)
            params, after_key = [start.astimezone(timezone.utc).strftime(CURSOR_FORMAT)], False
            while True:
                query = _page_query(spec.table, columns, spec, key, hook.placeholder, after_key, src.batch_rows)
                try:
                    cur.execute(query, params)
                    rows = cur.fetchall()
                except Exception as exc:  # the driver's own errors (each DB-API module has its own classes)
                    why = (f"source {src.name}: reading {spec.table} failed ({exc}); the batches loaded before stay, "
                           "the next run resumes from their cursor")
                    lost = type(exc).__name__ in ("OperationalError", "InterfaceError")  # the connection, not the SQL
                    raise (SourceUnavailable if lost else ExtractFailed)(why) from exc
                if not rows:
                    break
                last = rows[-1]
                last_ts, last_key = _utc(last[len(columns)]), [last[columns.index(k)] for k in key]
                with conn.transaction():
                    loaded, quarantined = _load_page(conn, src, spec, feed, columns, rows)
                    conn.execute(
                        "insert into ops.extract_cursors (source, source_table, cursor_value, cursor_key, rows_loaded,"
                        " batches) values (%s, %s, %s, %s, %s, 1) on conflict (source, source_table) do update set"
                        " cursor_value = excluded.cursor_value, cursor_key = excluded.cursor_key,"
                        " rows_loaded = ops.extract_cursors.rows_loaded + excluded.rows_loaded,"
                        " batches = ops.extract_cursors.batches + 1, updated_at = now()",
                        (src.name, spec.table, last_ts, Jsonb(json.loads(json.dumps(last_key, default=str))), loaded))
                result.batches += 1
                result.rows_read += len(rows)
                result.rows_loaded += loaded
                result.rows_quarantined += quarantined
                result.cursor = last_ts.isoformat()
                log.info("%s.%s: batch %d, %d row(s) loaded up to %s %s", src.name, spec.table, result.batches,
                         loaded, spec.cursor, last_ts.isoformat())
                if len(rows) < src.batch_rows:
                    break
                params = [last_ts.strftime(CURSOR_FORMAT), *last_key]
                after_key = True
    finally:
        source_conn.close()
    return result


def _source_connection(hook, src: Source):
    try:
        return hook.get_conn()
    except Exception as exc:
        raise SourceUnavailable(f"source {src.name}: cannot connect through Airflow connection {src.connection} "
                                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); nothing was "
                                "loaded; the next run catches up from the last committed cursor") from exc


def extract_tables(settings: Settings, src: Source, tables: list[str] | None = None,
                   full_refresh: bool = False) -> dict[str, dict]:
    """Load the named tables of a database source (default: all, in the sources file's order) incrementally, or
    from the start with `full_refresh`; return what each table loaded."""
    specs = {t.table: t for t in src.tables}
    unknown = [t for t in tables or [] if t not in specs]
    if unknown:
        raise ExtractFailed(f"source {src.name} has no table(s) {', '.join(unknown)} (tables: {', '.join(specs)})")
    t0 = time.monotonic()
    with postgres.warehouse(settings) as conn:
        ensure_tables(conn, load_contract())
        ops.ensure(conn, "extract")
        conn.commit()
    hook = hook_for(settings, src)
    results = {}
    for name in tables or list(specs):
        res = extract_table(settings, src, specs[name], hook, full_refresh)
        results[name] = res.__dict__
        log.info("%s.%s -> raw.%s: %d row(s) read, %d loaded, %d quarantined in %d batch(es)", src.name, name,
                 res.feed, res.rows_read, res.rows_loaded, res.rows_quarantined, res.batches)
    log.info("extracted %s from source %s in %.1f s", ", ".join(results), src.name, time.monotonic() - t0)
    return results


# The application's schema that `write_shop` creates: the contract's columns, updated_at on every table,
# deleted_at (soft delete) on orders and their lines. {ts} and {money} are the dialect's types.
SHOP_TABLES = {
    "products": ("product_id bigint primary key, category varchar(32), unit_price {money} not null,"
                 " updated_at {ts} not null", "product_id"),
    "customers": ("customer_id bigint primary key, signup_date date not null, country varchar(8), birth_year integer,"
                  " acquisition_channel varchar(32), updated_at {ts} not null", "customer_id"),
    "orders": ("order_id bigint primary key, customer_id bigint not null, ordered_at {ts} not null,"
               " amount {money} not null, channel varchar(16), updated_at {ts} not null, deleted_at {ts}", "order_id"),
    "order_items": ("order_id bigint not null, line_no integer not null, product_id bigint not null,"
                    " quantity integer not null, unit_price {money} not null, updated_at {ts} not null,"
                    " deleted_at {ts}, primary key (order_id, line_no)", "order_id, line_no"),
}
DIALECT_TYPES = {"mysql": {"ts": "datetime(6)", "money": "decimal(12, 2)"},
                 # SQLite: text keeps money exact and timestamps in an order that compares as time
                 "sqlite": {"ts": "text", "money": "text"}}


def create_shop_tables(db, dialect: str) -> None:
    """The application's tables and their updated_at indexes (what extraction pages on), if missing."""
    cur = db.cursor()
    for table, (columns, key) in SHOP_TABLES.items():
        cur.execute(f"create table if not exists {table} ({columns.format(**DIALECT_TYPES[dialect])})")
        cur.execute(f"create index if not exists {table}_updated_at_idx on {table} (updated_at, {key})")
    db.commit()


def _ts(day: date, seconds: int = 0) -> str:
    return (datetime.combine(day, datetime.min.time()) + timedelta(seconds=seconds)).strftime(CURSOR_FORMAT)


def _python(value):
    """A value the DB-API drivers bind: numpy scalars as Python's, NaN as NULL."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and value != value else value


def _replace(db, placeholder: str, table: str, frame: pd.DataFrame) -> None:
    if len(frame):
        cols = list(frame.columns)
        rows = [tuple(map(_python, r)) for r in frame.itertuples(index=False)]
        db.cursor().executemany(f"replace into {table} ({', '.join(cols)}) values ({', '.join([placeholder] * len(cols))})",
                                rows)


def write_shop(settings: Settings, src: Source, params, days: range, corrections: float = 0.01,
               cancellations: float = 0.005) -> dict[str, int]:
    """Write the generated shop's products, customers, orders and order lines into the source's database, day by
    day, as the shop's application would: each day inserts its new rows (updated_at = when they happened), changes
    the customers that changed, corrects the amount of a share of the last two weeks' orders (`corrections`) and
    soft-deletes another share with their lines (`cancellations`), stamping updated_at at the end of the day."""
    from mlscale.local import datagen

    hook = hook_for(settings, src)
    dialect = "sqlite" if hook.conn_type == "sqlite" else "mysql"
    ph = hook.placeholder
    pop, catalogue = datagen.population(params), datagen.products(params)
    counts = {"days": 0, "orders": 0, "customers": 0, "order_items": 0, "corrected": 0, "cancelled": 0}
    db = _source_connection(hook, src)
    try:
        create_shop_tables(db, dialect)
        for d in days:
            day = params.day(d)
            if d == 0:
                _replace(db, ph, "products", catalogue.assign(unit_price=catalogue["unit_price"].map("{:.2f}".format),
                                                              updated_at=_ts(day)))
            frames = datagen.simulate_day(params, pop, catalogue, d)
            ordered_at = frames["orders"]["ordered_at"].map(lambda v: _utc(v).strftime(CURSOR_FORMAT))
            _replace(db, ph, "customers", frames["customers"].assign(updated_at=_ts(day, 1)))
            orders = frames["orders"].assign(amount=frames["orders"]["amount"].map("{:.2f}".format),
                                             ordered_at=ordered_at, updated_at=ordered_at)
            _replace(db, ph, "orders", orders)
            stamp = dict(zip(frames["orders"]["order_id"], ordered_at))
            items = frames["order_items"]
            _replace(db, ph, "order_items", items.assign(unit_price=items["unit_price"].map("{:.2f}".format),
                                                         updated_at=items["order_id"].map(stamp)))
            rng = np.random.default_rng([params.seed, 7, d])
            cur = db.cursor()
            cur.execute(f"select order_id, amount from orders where ordered_at >= {ph} and ordered_at < {ph}"
                        " and deleted_at is null order by order_id", (_ts(day - timedelta(days=14)), _ts(day)))
            recent = cur.fetchall()
            pick = rng.random(len(recent))
            corrected = [(f"{Decimal(str(a)) * Decimal('0.9'):.2f}", _ts(day, 86000), o)
                         for (o, a), p in zip(recent, pick) if p < corrections]
            cancelled = [(_ts(day, 86100), _ts(day, 86100), o) for (o, _), p in zip(recent, pick)
                         if corrections <= p < corrections + cancellations]
            cur.executemany(f"update orders set amount = {ph}, updated_at = {ph} where order_id = {ph}", corrected)
            for table in ("orders", "order_items"):
                cur.executemany(f"update {table} set deleted_at = {ph}, updated_at = {ph} where order_id = {ph}",
                                cancelled)
            db.commit()
            counts["days"] += 1
            counts["orders"] += len(orders)
            counts["customers"] += len(frames["customers"])
            counts["order_items"] += len(items)
            counts["corrected"] += len(corrected)
            counts["cancelled"] += len(cancelled)
    finally:
        db.close()
    return counts
