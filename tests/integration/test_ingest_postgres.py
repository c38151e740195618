"""The loader against a real PostgreSQL: COPY, ledger, quarantine, re-delivery, rejection."""

import logging
import os
import shutil

import pytest

from mlscale.data import ingest
from mlscale.local.datagen import ShopParams, generate, read_landing
from mlscale.data.ingest import IngestRejected, ingest_landing
from tests.helpers import query, scalar

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
    monkeypatch.setattr(ingest, "records", lambda data, path, feed, found, real=ingest.records: committed_before.append(
        scalar(warehouse, "select count(*) from ops.ingest_files")) or real(data, path, feed, found))
    assert ingest_landing(dsn, warehouse.landing_dir)["orders"]["files_loaded"] == 10
    assert committed_before == list(range(10))
    hashed = []
    monkeypatch.setattr(ingest, "read_file", lambda path, real=ingest.read_file: hashed.append(path) or real(path))

    # Nothing changed: every file is known by path, size and mtime, none is read.
    with caplog.at_level(logging.INFO, logger="mlscale.data.ingest"):
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
        "5,8,2026-01-01T12:00:00+00:00,1e131072\n"  # an amount no numeric holds
        "6,8,2026-01-01T12:30:00+02:00,1.5E+3\n"  # another offset, an exponent: exact values in raw
    )
    bad = warehouse.landing_dir / "orders" / "dt=2026-01-02"
    bad.mkdir()
    (bad / "orders.csv").write_text("order_id,ordered_at,amount\n9,2026-01-02T10:00:00+00:00,3\n")

    with pytest.raises(IngestRejected, match=r"missing required column\(s\) customer_id"):
        ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)

    assert scalar(warehouse, "select count(*) from raw.orders") == 3
    assert scalar(warehouse, "select count(*) from raw.orders where order_id = 9") == 0
    assert scalar(warehouse, "select string_agg(line_no || ':' || reason, ';' order by line_no) from ops.quarantine") == \
        "3:amount: not a number: 'abc';5:customer_id: out of range for a 64-bit integer: '99999999999999999999';" \
        "6:amount: out of range for a PostgreSQL numeric: '1e131072'"
    assert scalar(warehouse, "select (ordered_at at time zone 'UTC')::text || ' ' || amount::text || ' ' || _line_no"
                             " from raw.orders where order_id = 6") == "2026-01-01 10:30:00 1500 7"
    assert scalar(warehouse, "select status from ops.ingest_files where path like '%dt=2026-01-02%'") == "rejected"
    # The known rejection is not re-raised on the next run; the ledger keeps it.
    again = ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    assert again["orders"]["files_skipped"] == 2


ORDERS_HEADER = "order_id,customer_id,ordered_at,amount,channel\r\n"


def _order(i: int, channel: str = "web") -> str:
    return f"{i},{i % 7},2026-01-0{1 + i % 2}T10:00:00+00:00,{i}.50,{channel}\r\n"


def test_everyday_exports_load_and_broken_ones_are_refused_with_the_reason(warehouse, tmp_path):
    landing, dsn = warehouse.landing_dir, warehouse.dsn(warehouse.warehouse_db)
    day = landing / "orders" / "dt=2026-01-01"
    day.mkdir(parents=True)
    files = {  # name -> bytes, as real systems write them
        "excel.csv": b"\xef\xbb\xbf" + (ORDERS_HEADER + _order(1) + _order(2)).encode(),  # BOM, CRLF
        "shouting.csv": (" ORDER_ID ,Customer_ID,Ordered_At,AMOUNT,channel\n" + _order(3) + _order(4, "")).encode(),
        "latin1.csv": (ORDERS_HEADER + _order(5, "café")).encode("latin-1"),
        "huge.csv": (ORDERS_HEADER + _order(6) + _order(7, '"' + "x" * 2_000_000 + '"')).encode(),
        "unclosed.csv": (ORDERS_HEADER + _order(8, '"web') + _order(9) + _order(10)).encode(),
        "semicolons.csv": (ORDERS_HEADER + _order(11)).replace(",", ";").encode(),
        ".uploading.csv": (ORDERS_HEADER + _order(12)).encode(),
    }
    for name, data in files.items():
        (day / name).write_bytes(data)
    not_a_day = landing / "orders" / "dt=2024-13-45"
    not_a_day.mkdir()
    (not_a_day / "orders.csv").write_bytes((ORDERS_HEADER + _order(13)).encode())
    (tmp_path / "outside.csv").write_bytes((ORDERS_HEADER + _order(14)).encode())
    (day / "linked.csv").symlink_to(tmp_path / "outside.csv")

    with pytest.raises(IngestRejected) as rejected:
        ingest_landing(dsn, landing)

    # Every refused file is named with what to do, and nothing of it reached raw.
    message = str(rejected.value)
    assert message.startswith("6 file(s) rejected and not loaded:")
    for name, why in (("latin1.csv", "not utf-8: byte 0xe9 at offset"),
                      ("huge.csv", "line 3: a field longer than 131,072 characters"),
                      ("unclosed.csv", "line 2: a quoted field is not closed before the end of the file"),
                      ("semicolons.csv", "the file looks semicolon-separated"),
                      ("linked.csv", "outside the landing folder"),
                      ("orders.csv", "folder dt=2024-13-45 is not a delivery day")):
        assert any(name in line and why in line for line in message.splitlines()), (name, message)
    assert sorted(scalar(warehouse, "select array_agg(order_id) from raw.orders")) == [1, 2, 3, 4]
    # Each file read is in the ledger, and each of its rows is loaded or quarantined, or the file is rejected.
    ledger = {r[0].rsplit("/", 1)[1]: r[1:] for r in query(
        warehouse, "select path, status, rows_loaded, rows_quarantined from ops.ingest_files").itertuples(index=False)}
    assert ledger == {"excel.csv": ("loaded", 2, 0), "shouting.csv": ("loaded", 2, 0), "latin1.csv": ("rejected", 0, 0),
                      "huge.csv": ("rejected", 0, 0), "unclosed.csv": ("rejected", 0, 0),
                      "semicolons.csv": ("rejected", 0, 0)}
    # The file still being uploaded loads once renamed, the misplaced one once moved into its day.
    (day / ".uploading.csv").rename(day / "uploaded.csv")
    (not_a_day / "orders.csv").rename(day / "moved.csv")
    (day / "linked.csv").unlink()
    again = ingest_landing(dsn, landing)
    assert again["orders"]["files_loaded"] == 2 and again["orders"]["rows_loaded"] == 2
    assert sorted(scalar(warehouse, "select array_agg(order_id) from raw.orders")) == [1, 2, 3, 4, 12, 13]
