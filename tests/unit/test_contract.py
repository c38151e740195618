"""The landing contract: what it declares, what it refuses to declare, and what each column type accepts."""

import re
from datetime import timezone
from decimal import Decimal

import pytest
import yaml

from mlscale.data.contract import PARSERS, FileFormat, currency, load_contract


def test_the_shipped_contract_makes_orders_the_only_mandatory_feed():
    contract = load_contract()
    assert [name for name, feed in contract.items() if feed.mandatory] == ["orders"]
    orders = contract["orders"]
    assert orders.key == ("order_id",) and orders.format == FileFormat("utf-8", ",")
    assert orders.column_names == ["order_id", "customer_id", "ordered_at", "amount", "channel", "deleted_at"]
    assert orders.required_columns == ["order_id", "customer_id", "ordered_at", "amount"]
    assert {c.type for feed in contract.values() for c in feed.columns} <= set(PARSERS)


def _contract(tmp_path, **orders):
    path = tmp_path / "landing.yml"
    path.write_text(yaml.safe_dump({"feeds": {"orders": {"key": ["order_id"], "columns": {
        "order_id": {"type": "bigint", "required": True}}, **orders}}}))
    return path


def test_a_contract_with_an_unknown_type_or_format_is_refused(tmp_path):
    bad_type = _contract(tmp_path, columns={"order_id": {"type": "money"}})
    with pytest.raises(ValueError, match=r"feed orders, column order_id: unknown type 'money'"):
        load_contract.__wrapped__(bad_type)
    for fmt, why in (({"encoding": "klingon"}, "unknown encoding 'klingon'"),
                     ({"delimiter": ";;"}, "format.delimiter: one character"),
                     ({"quote": "'"}, "unknown key(s) quote")):
        with pytest.raises(ValueError, match=re.escape(why)):
            load_contract.__wrapped__(_contract(tmp_path, format=fmt))
    latin = load_contract.__wrapped__(_contract(tmp_path, format={"encoding": "latin-1", "delimiter": ";"}))
    assert latin["orders"].format == FileFormat("latin-1", ";")


def test_a_feed_names_its_currency_default_eur(tmp_path):
    assert load_contract()["orders"].currency == "EUR" and currency() == "EUR"
    us_shop = _contract(tmp_path, currency="USD")
    load_contract.cache_clear()
    assert currency(us_shop) == "USD"
    for bad in ("usd", "US$", "DOLLAR"):
        with pytest.raises(ValueError, match=re.escape(f"feed orders, currency: an ISO 4217 code such as EUR or USD, "
                                                       f"not {bad!r}")):
            load_contract.__wrapped__(_contract(tmp_path, currency=bad))


@pytest.mark.parametrize("column_type, value, expected", [
    ("bigint", "9223372036854775807", 9223372036854775807),
    ("integer", "-2147483648", -2147483648),
    ("numeric", "12.50", Decimal("12.50")),
    ("text", "Zoë", "Zoë"),
    ("date", "2026-02-28", "2026-02-28"),
    ("timestamptz", "2026-02-28T09:30:00+01:00", "2026-02-28 08:30:00+00:00"),
])
def test_each_type_accepts_what_its_postgresql_column_holds(column_type, value, expected):
    parsed = PARSERS[column_type](value)
    if column_type == "timestamptz":
        parsed = str(parsed.astimezone(timezone.utc))
    elif column_type == "date":
        parsed = parsed.isoformat()
    assert parsed == expected


@pytest.mark.parametrize("column_type, value, why", [
    ("bigint", "9223372036854775808", "out of range for a 64-bit integer"),
    ("integer", "2147483648", "out of range for a 32-bit integer"),
    ("integer", "12.5", "invalid literal"),
    ("numeric", "NaN", "not a finite number"),
    ("numeric", "1e200000", "out of range for a PostgreSQL numeric"),
    ("numeric", "twelve", "not a number"),
    ("text", "", "missing value"),
    ("text", "a\x00b", "contains a NUL character"),
    ("date", "2026-02-30", "day is out of range"),
    ("timestamptz", "2026-02-28T09:30:00", "timestamp has no time zone"),
])
def test_each_type_refuses_what_its_postgresql_column_would(column_type, value, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        PARSERS[column_type](value)
