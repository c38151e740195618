"""Sources besides landing files, on the servers these machines run: MariaDB (127.0.0.1:3306) as an operational
database, Redis Streams (127.0.0.1:6379) as an event stream, SQLite as the embedded default; each into the same
warehouse through the landing contract, the ledger and dbt."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path

import MySQLdb
import pytest
import redis
import yaml

from mlscale.airflow import dagrun
from mlscale.data.contract import load_contract
from mlscale.local import datagen
from mlscale.sources import SOURCES_PATH, SourceUnavailable, source
from mlscale.sources import database, stream
from tests.helpers import build, empty_warehouse, query, scalar

pytestmark = pytest.mark.integration

MYSQL = {"host": os.environ.get("MLSCALE_TEST_MYSQL_HOST", "127.0.0.1"),
         "port": int(os.environ.get("MLSCALE_TEST_MYSQL_PORT", "3306")), "user": "root", "password": ""}
REDIS_URL = os.environ.get("MLSCALE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHOP = datagen.ShopParams(customers=200, days=80, seed=11)
# What the warehouse holds of the source's data (load times left out): equal after an incremental history
# of extracts and after one full reload. Not the customer attributes of the features: a source table holds each
# customer's latest version only, so their history (SCD2, and the imputations made from what was known at each
# as-of date) is what the extracts saw over time, which a reload cannot see again.
COMPARED = {
    "core.fct_orders": "select order_id, customer_id, ordered_at, amount, channel, is_deleted, n_lines, n_items"
                       " from core.fct_orders",
    "intermediate.int_customer_days": "select customer_id, activity_date, n_orders, amount, n_items, n_sessions, pages"
                                      " from intermediate.int_customer_days",
    "core.dim_customers": "select customer_id, signup_date, first_order_date, country, birth_year, acquisition_channel"
                          " from core.dim_customers where is_current and in_customers_feed",
    "ml.customer_features": "select * from ml.customer_features",
}
ATTRIBUTES = ["region", "age", "acquisition_channel", "is_imputed_region", "is_imputed_birth_year", "is_imputed_channel"]


@pytest.fixture
def sources_file(stack, tmp_path, monkeypatch) -> Path:
    """The shipped sources file with this test namespace's stream names, small batches (so that extraction pages)
    and no idle time before abandoned events are claimed."""
    data = yaml.safe_load(SOURCES_PATH.read_text())
    data["sources"]["shop_db"]["batch_rows"] = 400
    events = data["sources"]["web_events"]
    events.update(stream=f"test{stack.db_suffix}.web_sessions", dead_letter=f"test{stack.db_suffix}.web_sessions.dead",
                  batch_events=100, claim_idle_seconds=0)
    path = tmp_path / "sources.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("MLSCALE_SOURCES_FILE", str(path))
    r = redis.Redis.from_url(REDIS_URL)
    r.delete(events["stream"], events["dead_letter"])
    monkeypatch.setenv("AIRFLOW_CONN_MLSCALE_EVENTS", REDIS_URL)
    yield path
    r.delete(events["stream"], events["dead_letter"])


@pytest.fixture
def shop_db(stack, sources_file, monkeypatch) -> str:
    """A MariaDB database of this test namespace, empty, as the shop_db source's connection."""
    name = f"mlscale_shop{stack.db_suffix}"
    server = MySQLdb.connect(**MYSQL)
    server.cursor().execute(f"drop database if exists {name}")
    server.cursor().execute(f"create database {name}")
    monkeypatch.setenv("AIRFLOW_CONN_MLSCALE_SHOP_DB", f"mysql://root@{MYSQL['host']}:{MYSQL['port']}/{name}")
    yield name
    server.cursor().execute(f"drop database if exists {name}")
    server.close()


def mariadb(name: str, sql: str, args=()) -> list[tuple]:
    db = MySQLdb.connect(**MYSQL, database=name)
    try:
        cur = db.cursor()
        cur.execute(sql, args)
        rows = list(cur.fetchall())
        db.commit()
        return rows
    finally:
        db.close()


def snapshot(settings) -> dict:
    tables = {table: query(settings, f"{sql} order by 1, 2") for table, sql in COMPARED.items()}
    tables["ml.customer_features"] = tables["ml.customer_features"].drop(columns=ATTRIBUTES)
    return tables


def test_incremental_extracts_equal_a_full_reload(warehouse, shop_db):
    src = source("shop_db")
    written = database.write_shop(warehouse, src, SHOP, range(0, 45))
    first = database.extract_tables(warehouse, src)
    assert first["orders"]["rows_loaded"] == written["orders"] and first["orders"]["batches"] > 1  # paged
    assert first["order_items"]["rows_loaded"] == written["order_items"]
    build(warehouse)

    # A month of the application's life: new rows, corrected amounts, cancelled orders and lines, moved customers;
    # and a late row: committed after the extract with an updated_at before its cursor, inside the overlap.
    later = database.write_shop(warehouse, src, SHOP, range(45, 80))
    assert later["corrected"] > 20 and later["cancelled"] > 10
    cursor = scalar(warehouse, "select cursor_value from ops.extract_cursors where source = 'shop_db'"
                               " and source_table = 'orders'")
    late_at = (cursor.astimezone(timezone.utc).replace(tzinfo=None) - timedelta(minutes=5)).strftime(
        database.CURSOR_FORMAT)
    mariadb(shop_db, "insert into orders (order_id, customer_id, ordered_at, amount, channel, updated_at)"
                     " values (999000001, 1, %s, 123.45, 'web', %s)", (late_at, late_at))
    database.extract_tables(warehouse, src)
    build(warehouse)
    incremental = snapshot(warehouse)

    # The warehouse holds the source as it is now: live orders and their amounts, cancellations as tombstones.
    live = mariadb(shop_db, "select count(*), sum(amount) from orders where deleted_at is null")[0]
    assert tuple(query(warehouse, "select count(*), sum(amount) from core.fct_orders where not is_deleted").iloc[0]) \
        == (live[0], live[1])
    cancelled = {r[0] for r in mariadb(shop_db, "select order_id from orders where deleted_at is not null")}
    assert len(cancelled) > 10
    assert set(query(warehouse, "select order_id from core.fct_orders where is_deleted")["order_id"]) == cancelled
    assert scalar(warehouse, "select amount from core.fct_orders where order_id = 999000001") == Decimal("123.45")
    assert scalar(warehouse, "select sum(n_lines) from core.fct_orders where is_deleted") == 0

    empty_warehouse(warehouse)
    reload = database.extract_tables(warehouse, src, full_refresh=True)
    assert reload["orders"]["rows_loaded"] == live[0] + len(cancelled)
    build(warehouse)
    full = snapshot(warehouse)
    for table in COMPARED:
        assert len(full[table]) > 100, table
        assert incremental[table].equals(full[table]), table


def test_a_source_that_is_down_fails_clearly_and_the_next_run_catches_up(warehouse, shop_db, monkeypatch):
    src = source("shop_db")
    database.write_shop(warehouse, src, SHOP, range(0, 25))
    monkeypatch.setenv("AIRFLOW_CONN_MLSCALE_SHOP_DB", f"mysql://root@127.0.0.1:1/{shop_db}")
    with pytest.raises(SourceUnavailable, match="cannot connect through Airflow connection mlscale_shop_db"):
        database.extract_tables(warehouse, src)
    assert scalar(warehouse, "select count(*) from raw.orders") == 0
    assert scalar(warehouse, "select count(*) from ops.extract_cursors") == 0

    monkeypatch.setenv("AIRFLOW_CONN_MLSCALE_SHOP_DB", f"mysql://root@{MYSQL['host']}:{MYSQL['port']}/{shop_db}")
    caught_up = database.extract_tables(warehouse, src)
    assert caught_up["orders"]["rows_loaded"] == mariadb(shop_db, "select count(*) from orders")[0][0] > 100
    again = database.extract_tables(warehouse, src)  # a rerun reads only the overlap again
    assert 0 < again["orders"]["rows_read"] < caught_up["orders"]["rows_read"] / 10
    assert scalar(warehouse, "select count(distinct order_id) from raw.orders") == caught_up["orders"]["rows_loaded"]


def test_embedded_sqlite_default_quarantines_rows_that_break_the_contract(warehouse, sources_file, monkeypatch):
    """With no connection defined the source is a SQLite file under the state folder; a value that breaks the
    landing contract quarantines its row (with the reason), and the rest loads."""
    monkeypatch.setenv("AIRFLOW_CONN_MLSCALE_SHOP_DB", "")
    monkeypatch.delenv("AIRFLOW_CONN_MLSCALE_SHOP_DB")
    path = warehouse.state_dir / f"shop_db{warehouse.db_suffix}.sqlite"
    path.unlink(missing_ok=True)
    src = source("shop_db")
    written = database.write_shop(warehouse, src, SHOP, range(0, 10))
    assert path.exists()
    import sqlite3

    with sqlite3.connect(path) as db:  # SQLite's types are loose: a text where the contract wants a number
        db.execute("update orders set amount = 'n/a' where order_id = (select min(order_id) from orders)")
    loaded = database.extract_tables(warehouse, src)
    assert loaded["orders"]["rows_loaded"] == written["orders"] - 1
    assert loaded["orders"]["rows_quarantined"] == 1
    reason = scalar(warehouse, "select reason from ops.quarantine where path like 'shop_db:orders %%'")
    assert reason.startswith("amount: not a number")
    path.unlink()


def _events(days: range) -> list[dict]:
    pop, catalogue = datagen.population(SHOP), datagen.products(SHOP)
    feed = load_contract()["web_sessions"]
    return [e for d in days for e in stream.frame_events(datagen.simulate_day(SHOP, pop, catalogue, d)["web_sessions"],
                                                         feed)]


def test_a_consumer_killed_between_load_and_ack_loses_nothing_and_loads_nothing_twice(warehouse, sources_file):
    src = source("web_events")
    r = stream.client(warehouse, src)
    events = _events(range(0, 40))
    events[3]["pages"] = "many"  # breaks the contract
    del events[8]["event_id"]  # no id: cannot be loaded once
    stream.publish(r, src, events)
    assert len(events) > 2 * src.batch_events

    # A consumer that dies after its batch committed, before it acknowledged it (a real process, killed).
    child = textwrap.dedent("""
        import os, signal
        from mlscale.config import settings
        from mlscale.sources import source, stream
        stream._ack = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        stream.consume(settings(), source("web_events"), consumer="doomed")
    """)
    died = subprocess.run([sys.executable, "-c", child], env=os.environ, capture_output=True, text=True)
    assert died.returncode == -9, died.stderr[-2000:]
    loaded_before = scalar(warehouse, "select count(*) from raw.web_sessions")
    assert loaded_before == src.batch_events - 2  # the first batch, without its two bad events
    assert r.xpending(src.stream, src.group)["pending"] == src.batch_events

    totals = stream.consume(warehouse, src, consumer="survivor")
    assert totals["duplicates"] == src.batch_events - 2  # the dead consumer's batch, claimed and found loaded
    assert totals["dead_lettered"] == 2
    assert r.xpending(src.stream, src.group)["pending"] == 0
    ids = query(warehouse, "select count(*) as n, count(distinct _event_id) as ids from raw.web_sessions").iloc[0]
    assert ids["n"] == ids["ids"] == len(events) - 2

    # The producer publishes some events again (a retry): each is loaded once.
    stream.publish(r, src, events[100:150])
    again = stream.consume(warehouse, src)
    assert (again["rows_loaded"], again["duplicates"]) == (0, 50)
    dead = [fields for _, fields in r.xrange(src.dead_letter)]
    assert {d["_reason"] for d in dead} == {"no event_id field", "pages: invalid literal for int() with base 10: 'many'"}
    assert all(d["_source_stream"] == src.stream for d in dead)


def test_a_stream_that_is_down_fails_clearly_and_keeps_its_events(warehouse, sources_file, monkeypatch):
    src = source("web_events")
    stream.publish(stream.client(warehouse, src), src, _events(range(0, 3)))
    monkeypatch.setenv("AIRFLOW_CONN_MLSCALE_EVENTS", "redis://127.0.0.1:1/0")
    with pytest.raises(SourceUnavailable, match="did not answer.*events stay in stream"):
        stream.consume(warehouse, src)
    monkeypatch.setenv("AIRFLOW_CONN_MLSCALE_EVENTS", REDIS_URL)
    assert stream.consume(warehouse, src)["rows_loaded"] == len(_events(range(0, 3)))


def test_both_sources_through_airflow_into_the_same_warehouse(warehouse, shop_db):
    """extract_shop_db and extract_web_events as Airflow runs them, then warehouse_etl: the marts are built from
    the operational database's orders and the stream's sessions."""
    src = source("web_events")
    database.write_shop(warehouse, source("shop_db"), SHOP, range(0, 40))
    stream.publish(stream.client(warehouse, src), src, _events(range(0, 40)))
    dagrun.dag_bag.cache_clear()  # the DAG factory reads this test's sources file
    db_run = dagrun.run_dag(warehouse, "extract_shop_db")
    assert set(db_run.task_states.values()) == {"success"}
    stream_run = dagrun.run_dag(warehouse, "extract_web_events")
    assert stream_run.task_states == {"consume_events": "success"}
    etl = dagrun.run_dag(warehouse, "warehouse_etl")
    assert etl.state == "success"
    sessions = scalar(warehouse, "select sum(n_sessions) from intermediate.int_customer_days")
    assert sessions == len(_events(range(0, 40)))
    assert scalar(warehouse, "select count(*) from core.fct_orders") == \
        mariadb(shop_db, "select count(*) from orders")[0][0]
    assert scalar(warehouse, "select count(*) from ops.ingest_files where etl_status = 'published'") == \
        scalar(warehouse, "select count(*) from ops.ingest_files")
    dagrun.dag_bag.cache_clear()
