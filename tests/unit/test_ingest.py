from datetime import datetime, timezone
from decimal import Decimal

from mlscale.contract import load_contract
from mlscale.ingest import discover, parse_file, sha256_of

ORDERS = load_contract()["orders"]


def _write(tmp_path, text, name="orders.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_rows_are_typed(tmp_path):
    path = _write(tmp_path, "order_id,customer_id,ordered_at,amount\n1,7,2026-01-01T10:00:00+00:00,12.50\n")
    parsed = parse_file(path, ORDERS)
    assert parsed.error is None and parsed.quarantined == []
    assert parsed.rows == [(1, 7, datetime(2026, 1, 1, 10, tzinfo=timezone.utc), Decimal("12.50"), None, 2)]


def test_bad_rows_are_quarantined_and_good_rows_kept(tmp_path):
    path = _write(
        tmp_path,
        "order_id,customer_id,ordered_at,amount\n"
        "1,7,2026-01-01T10:00:00+00:00,12.50\n"
        "2,7,2026-01-01T11:00:00+00:00,abc\n"  # not a number
        "3,7,2026-01-01T12:00:00+00:00\n"  # too few fields
        ",7,2026-01-01T13:00:00+00:00,5\n"  # missing required value
        "5,7,2026-01-01 14:00:00,5\n"  # no time zone
        "6,8,2026-01-01T15:00:00+00:00,1e400\n"  # huge but finite: PostgreSQL numeric holds it
        "7,8,2026-01-01T15:00:00+00:00,NaN\n",
    )
    parsed = parse_file(path, ORDERS)
    assert [r[0] for r in parsed.rows] == [1, 6]
    reasons = {line: reason for line, _, reason in parsed.quarantined}
    assert reasons == {
        3: "amount: not a number: 'abc'",
        4: "expected 4 fields, got 3",
        5: "order_id: missing value",
        6: "ordered_at: timestamp has no time zone",
        8: "amount: not a finite number: 'NaN'",
    }
    assert parsed.quarantined[0][1] == "2,7,2026-01-01T11:00:00+00:00,abc"


def test_values_postgresql_would_refuse_are_quarantined_not_copied(tmp_path):
    path = _write(
        tmp_path,
        "order_id,customer_id,ordered_at,amount,channel\n"
        "1,-9223372036854775808,2026-01-01T10:00:00+00:00,5,web\n"  # the smallest bigint: fine
        "9223372036854775808,7,2026-01-01T10:00:00+00:00,5,web\n"  # one past the largest bigint
        "3,7,2026-01-01T10:00:00+00:00,5,we\x00b\n",  # NUL in text
    )
    parsed = parse_file(path, ORDERS)
    assert [r[0] for r in parsed.rows] == [1]
    assert {line: reason for line, _, reason in parsed.quarantined} == {
        3: "order_id: out of range for a 64-bit integer: '9223372036854775808'",
        4: "channel: contains a NUL character, which PostgreSQL text cannot hold",
    }
    sessions = _write(tmp_path, "session_id,customer_id,started_at,pages\n"
                                "1,7,2026-01-01T10:00:00+00:00,2147483647\n"
                                "2,7,2026-01-01T10:00:00+00:00,2147483648\n", name="web_sessions.csv")
    parsed = parse_file(sessions, load_contract()["web_sessions"])
    assert [r[0] for r in parsed.rows] == [1]
    assert parsed.quarantined[0][2] == "pages: out of range for a 32-bit integer: '2147483648'"


def test_missing_required_column_rejects_the_file(tmp_path):
    path = _write(tmp_path, "order_id,ordered_at,amount\n1,2026-01-01T10:00:00+00:00,3\n")
    parsed = parse_file(path, ORDERS)
    assert parsed.rows == []
    assert parsed.error == f"{path}: missing required column(s) customer_id for feed orders"


def test_extra_column_is_tolerated_and_reported(tmp_path):
    path = _write(tmp_path, "amount,coupon,order_id,customer_id,ordered_at\n3,X1,1,2,2026-01-01T10:00:00+00:00\n")
    parsed = parse_file(path, ORDERS)
    assert parsed.extra_columns == ["coupon"]
    assert parsed.rows[0][:2] == (1, 2) and parsed.rows[0][3] == Decimal("3")


def test_empty_file_is_rejected(tmp_path):
    assert "empty file" in parse_file(_write(tmp_path, ""), ORDERS).error


def test_discover_orders_by_delivery_day(tmp_path):
    for feed, day in [("orders", "2026-01-02"), ("customers", "2026-01-01"), ("orders", "2026-01-01")]:
        folder = tmp_path / feed / f"dt={day}"
        folder.mkdir(parents=True)
        (folder / f"{feed}.csv").write_text("x\n")
    (tmp_path / "unknown_feed").mkdir()
    found = [(f.name, p.parent.name) for f, p in discover(tmp_path, load_contract())]
    assert found == [("customers", "dt=2026-01-01"), ("orders", "dt=2026-01-01"), ("orders", "dt=2026-01-02")]


def test_sha256_depends_on_content_only(tmp_path):
    a = _write(tmp_path, "same\n", "a.csv")
    b = _write(tmp_path, "same\n", "b.csv")
    c = _write(tmp_path, "other\n", "c.csv")
    assert sha256_of(a) == sha256_of(b) != sha256_of(c)
