"""Benchmark: the feature mart's first build as two parts at the same time against the same SQL as one statement.

PostgreSQL runs a statement's window functions in one process. `customer_features` is a view of two parts (half of
the customers each, `models/marts/ml/parts`), which dbt's two threads build at the same time. On a generated shop
(built once by `warehouse.run_etl`, as `mlscale etl` builds it), each round times:
  parts:     `dbt run --full-refresh --select 1+customer_features` (the two parts, then the view): dbt's seconds on
             the slower part, from its result lines;
  baseline:  the part's compiled SQL with its customer filter removed (every customer, as the mart was built before
             the split) as one statement in this process, the way dbt builds a part: the contract's table, one
             insert, the three indexes.
Both must hold the same rows (count and checksum); prints the medians and the ratio (baseline / parts).
Own database (suffix _bench_parts, dropped at the end), a temporary landing folder. Usage:
    .venv/bin/python bench/feature_parts.py [--customers 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

os.environ["MLSCALE_DB_SUFFIX"] = "_bench_parts"

from mlscale.config import Settings  # noqa: E402

os.environ.update(Settings.from_env().service_env())

from mlscale import postgres  # noqa: E402
from mlscale.data import warehouse  # noqa: E402
from mlscale.data.ingest import ingest_landing  # noqa: E402
from mlscale.local.datagen import ShopParams, generate  # noqa: E402

PART_LINE = re.compile(r"OK created sql \w+ model ml\.customer_features_part_\d+ .*? in ([\d.]+)s\]")
# The part's filter as macros/customer_part.sql renders it for part 0 of 2.
PART_FILTER = "mod(abs(hashint8(customer_id)::bigint), 2) = 0"
INDEXES = ["customer_id, as_of_date", "as_of_date", "observed_last_day"]  # dbt_project.yml, models/marts/ml/parts
CHECKSUM = "select count(*), md5(string_agg(md5(to_jsonb(t)::text), '' order by t.customer_id, t.as_of_date)) from {} t"


def build_shop(settings: Settings, customers: int) -> None:
    postgres.ensure_databases(settings, [settings.warehouse_db])
    warehouse.drop_schemas(settings)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mlscale-bench-parts-") as landing:
        stats = generate(ShopParams(customers=customers, days=300), Path(landing), progress_every=0)
        ingest_landing(settings.dsn(settings.warehouse_db), Path(landing))
    warehouse.run_etl(settings, "bench")
    print(f"shop: {customers:,} customers, {stats.rows['orders']:,} orders, built in {time.monotonic() - t0:.0f}s",
          flush=True)


def single_statement_sql(settings: Settings) -> str:
    """customer_features_part_0's full-build SQL (dbt compile, not incremental) with its customer filter removed."""
    warehouse.dbt(settings, "compile", "--full-refresh", "--select", "customer_features_part_0")
    compiled = next((settings.dbt_target_dir / "compiled").rglob("customer_features_part_0.sql")).read_text()
    if compiled.count(PART_FILTER) != 2:
        raise RuntimeError(f"expected the part filter twice (days, versions) in the compiled SQL: {PART_FILTER}")
    return compiled.replace(PART_FILTER, "true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    settings = Settings.from_env()
    try:
        compare(settings, args.customers, args.rounds)
    finally:  # a 100k warehouse is several GiB
        postgres.drop_databases(settings, [settings.warehouse_db])


def compare(settings: Settings, customers: int, rounds: int) -> None:
    build_shop(settings, customers)
    statement = single_statement_sql(settings)
    parts, single = [], []
    for round_ in range(1, rounds + 1):
        out = warehouse.dbt(settings, "run", "--full-refresh", "--select", "1+customer_features")
        parts.append(max(float(s) for s in PART_LINE.findall(out)))
        with postgres.warehouse(settings) as conn:
            conn.execute("create schema if not exists bench")
            conn.execute("drop table if exists bench.customer_features_single")
            t0 = time.monotonic()  # as dbt builds a part: the contract's table, one insert, then the three indexes
            conn.execute("create table bench.customer_features_single"
                         " (like ml.customer_features_part_0 including constraints)")
            conn.execute(f"insert into bench.customer_features_single {statement}")
            for columns in INDEXES:
                conn.execute(f"create index on bench.customer_features_single ({columns})")
            single.append(time.monotonic() - t0)
            mart = conn.execute(CHECKSUM.format("ml.customer_features")).fetchone()
            whole = conn.execute(CHECKSUM.format("bench.customer_features_single")).fetchone()
        same = "the same rows" if mart == whole else f"DIFFERENT rows ({mart[0]:,} against {whole[0]:,})"
        print(f"round {round_}: two parts {parts[-1]:.1f}s, one statement {single[-1]:.1f}s; {same}"
              f" ({mart[0]:,} rows, checksum {mart[1][:12]})", flush=True)
    print(f"median: two parts {statistics.median(parts):.1f}s, one statement {statistics.median(single):.1f}s,"
          f" {statistics.median(single) / statistics.median(parts):.2f}x faster as two parts", flush=True)


if __name__ == "__main__":
    main()
