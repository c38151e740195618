import dataclasses
import logging
from datetime import datetime, timezone
from decimal import Decimal

from mlscale.data.contract import FileFormat, load_contract
from mlscale.data.ingest import FileRejected, ParsedFile, discover, load_file, path_problem, read_file, records

ORDERS = load_contract()["orders"]


@dataclasses.dataclass
class Parsed:
    rows: list[tuple]
    quarantined: list[tuple[int, str, str]]
    extra_columns: list[str]
    error: str | None


def parse_file(path, feed) -> Parsed:
    """Every row `records` yields and what it quarantined, or why it rejected the file."""
    found = ParsedFile()
    try:
        rows = [tuple(r) for r in records(path.read_bytes(), path, feed, found)]
    except FileRejected as exc:
        return Parsed([], [], [], str(exc))
    return Parsed(rows, found.quarantined, found.extra_columns, None)


def _write(tmp_path, text, name="orders.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_rows_are_typed(tmp_path):
    path = _write(tmp_path, "order_id,customer_id,ordered_at,amount\n1,7,2026-01-01T10:00:00+00:00,12.50\n")
    parsed = parse_file(path, ORDERS)
    assert parsed.error is None and parsed.quarantined == []
    assert parsed.rows == [(1, 7, datetime(2026, 1, 1, 10, tzinfo=timezone.utc), Decimal("12.50"), None, None, 2)]


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
        "3,7,2026-01-01T10:00:00+00:00,5,we\x00b\n"  # NUL in text
        "4,7,2026-01-01T10:00:00+00:00,1e131071,web\n"  # the largest numeric exponent: fine
        "5,7,2026-01-01T10:00:00+00:00,1e131072,web\n"  # too many digits before the point
        "6,7,2026-01-01T10:00:00+00:00,1.5e-16383,web\n",  # too many digits after it
    )
    parsed = parse_file(path, ORDERS)
    assert [r[0] for r in parsed.rows] == [1, 4]
    assert {line: reason for line, _, reason in parsed.quarantined} == {
        3: "order_id: out of range for a 64-bit integer: '9223372036854775808'",
        4: "channel: contains a NUL character, which PostgreSQL text cannot hold",
        6: "amount: out of range for a PostgreSQL numeric: '1e131072'",
        7: "amount: out of range for a PostgreSQL numeric: '1.5e-16383'",
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
    assert read_file(a)[1] == read_file(b)[1] != read_file(c)[1]
    assert read_file(a)[0] == b"same\n"


HEADER = "order_id,customer_id,ordered_at,amount\n"
ROW = "{},7,2026-01-01T10:00:00+00:00,12.50\n"


def _write_bytes(tmp_path, data: bytes, name="orders.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_byte_order_mark_and_crlf_line_ends_load(tmp_path):
    # What Excel writes as "CSV UTF-8": a BOM before the first column name, CRLF after every line.
    text = (HEADER + ROW.format(1) + ROW.format(2)).replace("\n", "\r\n")
    parsed = parse_file(_write_bytes(tmp_path, b"\xef\xbb\xbf" + text.encode()), ORDERS)
    assert parsed.error is None and parsed.quarantined == []
    assert [(r[0], r[-1]) for r in parsed.rows] == [(1, 2), (2, 3)]


def test_bytes_that_are_not_utf8_reject_the_file_with_the_offset(tmp_path):
    data = (HEADER + "1,7,2026-01-01T10:00:00+00:00,12.50,café\n").replace("amount", "amount,channel").encode("latin-1")
    path = _write_bytes(tmp_path, data)
    parsed = parse_file(path, ORDERS)
    offset = data.index(b"\xe9")
    assert parsed.rows == [] and parsed.error == (
        f"{path}: not utf-8: byte 0xe9 at offset {offset} (line 2); deliver the file in utf-8, or declare its "
        "encoding for feed orders in the contract (format: {encoding: latin-1})")
    # Declared, the same bytes load, the text decoded as it was written.
    latin = dataclasses.replace(ORDERS, format=FileFormat(encoding="latin-1"))
    assert parse_file(path, latin).rows[0][4] == "café"


def test_a_field_over_the_parsers_limit_rejects_the_file_with_its_line(tmp_path):
    path = _write(tmp_path, HEADER.replace("amount", "amount,channel") + ROW.format(1).replace("\n", ",web\n")
                  + ROW.format(2).replace("\n", ',"' + "x" * 2_000_000 + '"\n'))
    parsed = parse_file(path, ORDERS)
    assert parsed.rows == [] and parsed.error.startswith(f"{path}: line 3: a field longer than 131,072 characters")


def test_an_unclosed_quote_rejects_the_file_instead_of_swallowing_the_rows_after_it(tmp_path):
    path = _write(tmp_path, HEADER.replace("amount", "amount,channel") + '1,7,2026-01-01T10:00:00+00:00,5,"web\n'
                  + "".join(ROW.format(i).replace("\n", ",web\n") for i in range(2, 6)))
    parsed = parse_file(path, ORDERS)
    assert parsed.rows == [] and parsed.error.startswith(
        f"{path}: line 2: a quoted field is not closed before the end of the file")


def test_a_record_over_several_lines_is_quarantined_with_its_first_line_and_raw_text(tmp_path):
    path = _write(tmp_path, HEADER.replace("amount", "amount,channel") + '1,7,2026-01-01T10:00:00+00:00,abc,"we\nb"\n'
                  + ROW.format(2).replace("\n", ",web\n"))
    parsed = parse_file(path, ORDERS)
    assert parsed.quarantined == [(2, '1,7,2026-01-01T10:00:00+00:00,abc,"we\nb"', "amount: not a number: 'abc'")]
    assert [(r[0], r[-1]) for r in parsed.rows] == [(2, 4)]


def test_header_names_match_ignoring_case_and_spaces(tmp_path):
    parsed = parse_file(_write(tmp_path, " ORDER_ID ,Customer_Id,ordered_at, Amount\n" + ROW.format(1)), ORDERS)
    assert parsed.error is None and parsed.rows[0][:2] == (1, 7)
    twice = parse_file(_write(tmp_path, "order_id,ORDER_ID,customer_id,ordered_at,amount\n", "twice.csv"), ORDERS)
    assert "column(s) order_id named more than once" in twice.error


def test_another_delimiter_is_named_and_can_be_declared(tmp_path):
    path = _write(tmp_path, (HEADER + ROW.format(1)).replace(",", ";"))
    assert parse_file(path, ORDERS).error == (
        f"{path}: missing required column(s) order_id, customer_id, ordered_at, amount for feed orders; the header "
        "is one field containing ';': the file looks semicolon-separated, while the contract expects ',' (declare "
        "format: {delimiter: ';'} for the feed, or deliver it comma-separated)")
    semicolons = dataclasses.replace(ORDERS, format=FileFormat(delimiter=";"))
    assert parse_file(path, semicolons).rows[0][0] == 1


def test_files_being_written_wait_and_misplaced_ones_are_named(tmp_path, caplog):
    day = tmp_path / "orders" / "dt=2026-01-01"
    day.mkdir(parents=True)
    for name in ("orders.csv", ".orders.csv.swp.csv", "_tmp.csv"):
        (day / name).write_text(HEADER)
    (tmp_path / "orders" / "loose.csv").write_text(HEADER)
    with caplog.at_level(logging.INFO, logger="mlscale.data.ingest"):
        found = discover(tmp_path, load_contract())
    assert [p.name for _, p in found] == ["orders.csv"]
    assert any("2 file(s) still being written" in m for m in caplog.messages)
    assert any("ignoring 1 file(s) outside landing/<feed>/dt=YYYY-MM-DD/" in m and "loose.csv" in m
               for m in caplog.messages)


def test_a_folder_that_is_not_a_day_or_a_link_out_of_landing_is_refused(tmp_path):
    landing = tmp_path / "landing"
    bad_day = landing / "orders" / "dt=2024-13-45"
    bad_day.mkdir(parents=True)
    (bad_day / "orders.csv").write_text(HEADER)
    assert path_problem(landing, bad_day / "orders.csv") == (
        f"{bad_day / 'orders.csv'}: folder dt=2024-13-45 is not a delivery day (dt=YYYY-MM-DD): move the file into "
        "its day's folder")
    good_day = landing / "orders" / "dt=2026-01-01"
    good_day.mkdir()
    (tmp_path / "elsewhere.csv").write_text(HEADER)
    (good_day / "linked.csv").symlink_to(tmp_path / "elsewhere.csv")
    assert "outside the landing folder" in path_problem(landing, good_day / "linked.csv")
    (good_day / "orders.csv").write_text(HEADER)
    (good_day / "inside.csv").symlink_to(good_day / "orders.csv")
    assert path_problem(landing, good_day / "inside.csv") is None


def test_a_file_still_growing_is_left_for_the_next_run(tmp_path):
    path = _write(tmp_path, HEADER + ROW.format(1))
    stat = path.stat()  # what the run saw when it listed the file
    with path.open("a") as fh:
        fh.write(ROW.format(2))
    # Nothing is parsed or recorded (no connection is even used): the next run reads the whole file.
    result = load_file(None, ORDERS, path, stat)
    assert (result.status, result.error, result.rows_loaded) == ("skipped", "changed while being read", 0)
