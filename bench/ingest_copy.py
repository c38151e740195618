"""Benchmark: ingest_landing loads a large orders file at no less than 0.8 of `psql \\copy`'s throughput.

Writes one orders file of --rows rows (default 10,000,000, seeded; kept under .mlscale/bench/ for the next
run), then loads it into raw.orders of a database of its own (suffix _bench), alternating, --repeat times each:
- `psql \\copy` of the file: PostgreSQL's own CSV parser, no checks (the baseline);
- mlscale's ingest in a child process (read and hash, decode, CSV parse, the contract's checks on every
  value, COPY; what ingest_landing runs), with its peak memory.
Both start from an empty raw.orders with the same indexes, after a checkpoint. Prints seconds and rows/s of
each run, the medians and their ratio (target: ingest/psql throughput >= 0.8). `--code DIR` runs the ingest
from another checkout's `include/` (e.g. a `git worktree` of an older commit) to compare before and after.
Usage:
    .venv/bin/python bench/ingest_copy.py [--rows 10000000] [--repeat 2] [--code /tmp/before/include]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ["MLSCALE_DB_SUFFIX"] = "_bench"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from psycopg import sql  # noqa: E402

from mlscale import postgres
from mlscale.config import Settings  # noqa: E402

COLUMNS = "order_id, customer_id, ordered_at, amount, channel"


def orders_file(settings: Settings, rows: int, seed: int = 7) -> Path:
    """A landing file of `rows` orders (written once per size, in chunks), as landing/orders/dt=.../orders.csv."""
    path = settings.state_dir / "bench" / f"ingest-{rows}" / "orders" / "dt=2026-01-01" / "orders.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC").value // 10**9
    t0 = time.monotonic()
    partial = path.with_name("_orders.csv")  # `_` files are never loaded: renamed once complete
    with partial.open("w", newline="") as out:
        for first in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - first)
            chunk = pd.DataFrame({
                "order_id": np.arange(first + 1, first + n + 1),
                "customer_id": rng.integers(1, 1_000_000, n),
                "ordered_at": pd.to_datetime(start + rng.integers(0, 86_400, n), unit="s", utc=True)
                .strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                "amount": rng.gamma(2.0, 30.0, n).round(2),
                "channel": rng.choice(np.array(["web", "app", "store", ""]), n, p=[0.5, 0.3, 0.15, 0.05]),
            })
            chunk.to_csv(out, index=False, header=first == 0, float_format="%.2f")
    partial.rename(path)
    print(f"wrote {rows:,} orders ({path.stat().st_size / 2**20:.0f} MiB) in {time.monotonic() - t0:.0f}s: {path}",
          flush=True)
    return path


def empty_raw(settings: Settings) -> None:
    """raw.orders and the ledger emptied, then a checkpoint, so that each run starts from the same state."""
    with postgres.warehouse(settings, autocommit=True) as conn:
        conn.execute("truncate raw.orders, ops.ingest_files, ops.ingest_paths, ops.quarantine")
        conn.execute("checkpoint")


def psql_copy(settings: Settings, path: Path) -> float:
    """Seconds for `psql \\copy` of the file into raw.orders: the file's columns, and _file_sha256 (indexed, as
    the ingest writes it) the file's sha256 from a column default."""
    dsn = settings.dsn(settings.warehouse_db)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with postgres.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("alter table raw.orders alter column _file_sha256 set default {}").format(sha))
    try:
        t0 = time.monotonic()
        subprocess.run(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-qc",
                        f"\\copy raw.orders ({COLUMNS}) from '{path}' with (format csv, header true)"], check=True)
        return time.monotonic() - t0
    finally:
        with postgres.connect(dsn, autocommit=True) as conn:
            conn.execute("alter table raw.orders alter column _file_sha256 drop default")


def ingest(settings: Settings, landing: Path, code: str | None) -> dict:
    """The ingest in a child process (its own peak memory): seconds, rows loaded, peak RSS in MiB."""
    env = {**os.environ, "PYTHONPATH": code} if code else None
    out = subprocess.run([sys.executable, __file__, "--child", str(landing)], env=env, check=True,
                         stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def child(landing: Path) -> None:
    from mlscale.data.ingest import ingest_landing

    settings = Settings.from_env()
    t0, cpu0 = time.monotonic(), time.process_time()
    summary = ingest_landing(settings.dsn(settings.warehouse_db), landing)
    seconds = time.monotonic() - t0
    print(json.dumps({"seconds": seconds, "cpu_seconds": time.process_time() - cpu0, "rows": summary["orders"]["rows_loaded"],
                      "quarantined": summary["orders"]["rows_quarantined"],
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--code", help="the include/ folder of another checkout to run the ingest from")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    settings = Settings.from_env()
    postgres.ensure_databases(settings, [settings.warehouse_db])
    path = orders_file(settings, args.rows)
    landing = path.parents[2]
    with postgres.warehouse(settings) as conn:  # raw.orders with its indexes, the ledger
        from mlscale.data.contract import load_contract
        from mlscale.data.ingest import ensure_tables

        ensure_tables(conn, load_contract())
    psql_s, ingest_s = [], []
    for i in range(args.repeat):
        empty_raw(settings)
        psql_s.append(psql_copy(settings, path))
        print(f"run {i + 1}: psql \\copy {psql_s[-1]:6.1f}s ({args.rows / psql_s[-1]:,.0f} rows/s)", flush=True)
        empty_raw(settings)
        run = ingest(settings, landing, args.code)
        if run["rows"] != args.rows:
            sys.exit(f"ingest loaded {run['rows']:,} of {args.rows:,} rows ({run['quarantined']:,} quarantined)")
        ingest_s.append(run["seconds"])
        print(f"run {i + 1}: ingest      {run['seconds']:6.1f}s ({args.rows / run['seconds']:,.0f} rows/s),"
              f" {run.get('cpu_seconds', 0):.1f} s CPU in Python, peak memory {run['peak_mib']:,.0f} MiB", flush=True)
    empty_raw(settings)
    psql_med, ingest_med = statistics.median(psql_s), statistics.median(ingest_s)
    print(f"median of {args.repeat}: psql \\copy {psql_med:.1f}s, ingest {ingest_med:.1f}s;"
          f" ingest throughput / psql \\copy throughput = {psql_med / ingest_med:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
