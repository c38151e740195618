"""Benchmark: the sources' throughput against a plain bulk read of the same rows, measured in the same run.

On a warehouse of its own (suffix _bench_src):
- database: the generated shop (--customers, --days) written into a MariaDB database of its own
  (mlscale_shop_bench_src on 127.0.0.1:3306, or MLSCALE_BENCH_MYSQL_HOST/_PORT), then `extract_tables` of the orders
  table (pages of `batch_rows`, each parsed against the contract and COPYed with its ledger row and cursor in one
  transaction), against two baselines on the same rows: a plain `select` of them through the same driver, and
  that read plus a bare COPY into an unindexed PostgreSQL table (the least a load can do);
- stream: the shop's web sessions published to a Redis stream of its own, then `consume` (micro-batches, event-id
  dedupe, COPY, XACK), against a plain XRANGE read of the same events in pages of the same size.
Each timing runs --repeat times on emptied targets; prints rows/s of each, the medians and the ratios. Drops what
it made (the databases, the streams) at the end.
Usage:
    .venv/bin/python bench/source_extract.py [--customers 20000] [--days 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

os.environ["MLSCALE_DB_SUFFIX"] = "_bench_src"

from mlscale.config import Settings  # noqa: E402

os.environ.update(Settings.from_env().service_env())

import MySQLdb  # noqa: E402

from mlscale import postgres  # noqa: E402
from mlscale.data.contract import load_contract  # noqa: E402
from mlscale.data.warehouse import drop_schemas  # noqa: E402
from mlscale.local import datagen  # noqa: E402
from mlscale.sources import source  # noqa: E402
from mlscale.sources import database, stream  # noqa: E402

MYSQL = {"host": os.environ.get("MLSCALE_BENCH_MYSQL_HOST", "127.0.0.1"),
         "port": int(os.environ.get("MLSCALE_BENCH_MYSQL_PORT", "3306")), "user": "root"}
REDIS_URL = os.environ.get("MLSCALE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DB_NAME = "mlscale_shop_bench_src"
COLUMNS = "order_id, customer_id, ordered_at, amount, channel, deleted_at"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def report(name: str, rows: int, runs: dict[str, list[float]]) -> None:
    medians = {k: statistics.median(v) for k, v in runs.items()}
    for k, v in runs.items():
        print(f"  {name} {k:<28} " + "  ".join(f"{s:6.2f} s" for s in v) + f"   median {rows / medians[k]:>10,.0f} rows/s")
    first = next(iter(medians))
    for k in list(medians)[1:]:
        print(f"  {name}: {first} throughput / {k}'s = {medians[k] / medians[first]:.2f}")


def bench_database(settings: Settings, params, days: int, repeat: int) -> None:
    server = MySQLdb.connect(**MYSQL)
    server.cursor().execute(f"drop database if exists {DB_NAME}")
    server.cursor().execute(f"create database {DB_NAME}")
    os.environ["AIRFLOW_CONN_MLSCALE_SHOP_DB"] = f"mysql://root@{MYSQL['host']}:{MYSQL['port']}/{DB_NAME}"
    src = dataclasses.replace(source("shop_db"), tables=tuple(t for t in source("shop_db").tables if t.table == "orders"))
    t0 = time.perf_counter()
    written = database.write_shop(settings, src, params, range(days))
    print(f"database: {written['orders']:,} orders written to MariaDB in {time.perf_counter() - t0:.0f} s")
    db = MySQLdb.connect(**MYSQL, database=DB_NAME)

    def bulk_read():
        cur = db.cursor()
        cur.execute(f"select {COLUMNS}, updated_at from orders")
        return cur.fetchall()

    def read_and_copy():
        rows = bulk_read()
        with postgres.warehouse(settings) as conn, conn.cursor() as cur:
            cur.execute("drop table if exists public.bench_orders")
            cur.execute("create table public.bench_orders (order_id bigint, customer_id bigint, ordered_at timestamptz,"
                        " amount numeric, channel text, deleted_at timestamp, updated_at timestamp)")
            with cur.copy(f"copy public.bench_orders ({COLUMNS}, updated_at) from stdin") as copy:
                for row in rows:
                    copy.write_row(row)

    def extract():
        drop_schemas(settings)
        database.extract_tables(settings, src)

    runs = {"extract_tables": [], "plain select": [], "select + bare COPY": []}
    for _ in range(repeat):
        runs["extract_tables"].append(timed(extract))
        runs["plain select"].append(timed(bulk_read))
        runs["select + bare COPY"].append(timed(read_and_copy))
    report("database", written["orders"], runs)
    db.close()
    server.cursor().execute(f"drop database {DB_NAME}")
    server.close()


def bench_stream(settings: Settings, params, days: int, repeat: int) -> None:
    os.environ["AIRFLOW_CONN_MLSCALE_EVENTS"] = REDIS_URL
    src = dataclasses.replace(source("web_events"), stream="bench.web_sessions", dead_letter="bench.web_sessions.dead")
    r = stream.client(settings, src)
    r.delete(src.stream, src.dead_letter)
    pop, catalogue, feed = datagen.population(params), datagen.products(params), load_contract()["web_sessions"]
    events = [e for d in range(days) for e in stream.frame_events(
        datagen.simulate_day(params, pop, catalogue, d)["web_sessions"], feed)]
    stream.publish(r, src, events)
    print(f"stream: {len(events):,} events published to Redis")

    def consume():
        drop_schemas(settings)
        r.xgroup_destroy(src.stream, src.group)
        stream.consume(settings, src)

    def xrange_read():
        last, n = "-", 0
        while True:
            page = r.xrange(src.stream, min=last, count=src.batch_events)
            page = page[1:] if last != "-" else page
            if not page:
                return n
            n += len(page)
            last = page[-1][0]

    r.xgroup_create(src.stream, src.group, id="0")
    runs = {"consume": [], "plain XRANGE": []}
    for _ in range(repeat):
        runs["consume"].append(timed(consume))
        runs["plain XRANGE"].append(timed(xrange_read))
    report("stream", len(events), runs)
    r.delete(src.stream, src.dead_letter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    settings = Settings.from_env()
    postgres.ensure_server(settings)
    postgres.ensure_databases(settings, [settings.warehouse_db])
    params = datagen.ShopParams(customers=args.customers, days=args.days)
    try:
        bench_database(settings, params, args.days, args.repeat)
        bench_stream(settings, params, args.days, args.repeat)
    finally:
        postgres.drop_databases(settings, [settings.warehouse_db])


if __name__ == "__main__":
    main()
