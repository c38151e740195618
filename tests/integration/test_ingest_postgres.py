"""The loader against a real PostgreSQL: COPY, ledger, quarantine, re-delivery, rejection."""

import logging
import os
import shutil

import pytest

from mlscale import ingest
from mlscale.datagen import ShopParams, generate, read_landing
from mlscale.ingest import IngestRejected, ingest_landing
from tests.helpers import scalar

pytestmark = pytest.mark.integration
PARAMS = ShopParams(customers=200, days=40, seed=11)


def test_load_is_complete_and_idempotent(warehouse):
    stats = generate(PARAMS, warehouse.landing_dir)
    orders = read_landing(warehouse.landing_dir, "orders")
    dsn = warehouse.dsn(warehouse.warehouse_db)

    first = ingest_landing(dsn, warehouse.landing_dir)
    for feed, rows in stats.rows.items():
        assert first[feed]["rows_loaded"] == rows, feed
        assert scalar(warehouse, f"select count(*) from raw.{feed}") == rows, feed
    assert scalar(warehouse, "select sum(amount)::float8 from raw.orders") == pytest.approx(orders["amount"].astype(float).sum())

    # A rerun and a re-delivered file (same bytes, another folder) load nothing twice.
    day = next((warehouse.landing_dir / "orders").iterdir())
    redelivered = warehouse.landing_dir / "orders" / "dt=2099-01-01"
    redelivered.mkdir()
    shutil.copy(day / "orders.csv", redelivered / "orders.csv")
    second = ingest_landing(dsn, warehouse.landing_dir)
    assert second["orders"]["rows_loaded"] == 0
    assert second["orders"]["files_skipped"] == first["orders"]["files_loaded"] + 1
    assert scalar(warehouse, "select count(*) from raw.orders") == len(orders)


def test_a_rerun_reads_only_new_or_changed_files(warehouse, monkeypatch, caplog):
    params = ShopParams(customers=50, days=11, seed=3, feeds=("orders",))
    generate(params, warehouse.landing_dir, days=range(0, 10))
    dsn = warehouse.dsn(warehouse.warehouse_db)
    # One transaction per file: while a file is parsed, every file before it is committed, seen from outside.
    committed_before = []
    monkeypatch.setattr(ingest, "parse_file", lambda path, feed, real=ingest.parse_file: committed_before.append(
        scalar(warehouse, "select count(*) from ops.ingest_files")) or real(path, feed))
    assert ingest_landing(dsn, warehouse.landing_dir)["orders"]["files_loaded"] == 10
    assert committed_before == list(range(10))
    hashed = []
    monkeypatch.setattr(ingest, "sha256_of", lambda path, real=ingest.sha256_of: hashed.append(path) or real(path))

    # Nothing changed: every file is known by path, size and mtime, none is read.
    with caplog.at_level(logging.INFO, logger="mlscale.ingest"):
        assert ingest_landing(dsn, warehouse.landing_dir)["orders"]["files_skipped"] == 10
    assert hashed == []
    assert "10 landing file(s), 10 unchanged since they were read; reading 0" in caplog.messages

    # A file touched (same bytes, new mtime) and a copy under another path: hashed once, found in the
    # ledger, loaded nothing; the next run reads neither.
    files = sorted((warehouse.landing_dir / "orders").glob("dt=*/orders.csv"))
    touched = files[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    copy = warehouse.landing_dir / "orders" / "dt=2099-01-01" / "orders.csv"
    copy.parent.mkdir()
    shutil.copy(files[1], copy)
    again = ingest_landing(dsn, warehouse.landing_dir)
    assert sorted(hashed) == sorted([touched, copy])
    assert again["orders"]["files_skipped"] == 11 and again["orders"]["rows_loaded"] == 0
    hashed.clear()
    ingest_landing(dsn, warehouse.landing_dir)
    assert hashed == []

    # A new day is the one file read, and it loads.
    generate(params, warehouse.landing_dir, days=range(10, 11))
    new = ingest_landing(dsn, warehouse.landing_dir)
    assert [p.parent.name for p in hashed] == [f"dt={params.day(10)}"]
    assert new["orders"]["files_loaded"] == 1 and new["orders"]["rows_loaded"] > 0


def test_bad_rows_quarantined_and_bad_file_rejected(warehouse):
    folder = warehouse.landing_dir / "orders" / "dt=2026-01-01"
    folder.mkdir(parents=True)
    (folder / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,amount\n"
        "1,7,2026-01-01T10:00:00+00:00,12.50\n"
        "2,7,2026-01-01T11:00:00+00:00,abc\n"
        "3,8,2026-01-01T12:00:00+00:00,3\n"
        "4,99999999999999999999,2026-01-01T12:00:00+00:00,3\n"  # a customer_id no bigint holds
    )
    bad = warehouse.landing_dir / "orders" / "dt=2026-01-02"
    bad.mkdir()
    (bad / "orders.csv").write_text("order_id,ordered_at,amount\n9,2026-01-02T10:00:00+00:00,3\n")

    with pytest.raises(IngestRejected, match=r"missing required column\(s\) customer_id"):
        ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)

    assert scalar(warehouse, "select count(*) from raw.orders") == 2
    assert scalar(warehouse, "select count(*) from raw.orders where order_id = 9") == 0
    assert scalar(warehouse, "select string_agg(line_no || ':' || reason, ';' order by line_no) from ops.quarantine") == \
        "3:amount: not a number: 'abc';5:customer_id: out of range for a 64-bit integer: '99999999999999999999'"
    assert scalar(warehouse, "select status from ops.ingest_files where path like '%dt=2026-01-02%'") == "rejected"
    # The known rejection is not re-raised on the next run; the ledger keeps it.
    again = ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert again["orders"]["files_skipped"] == 2
