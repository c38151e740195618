"""The landing contract (include/contracts/landing.yml): feeds, columns, types, keys."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Callable

import yaml

from mlscale.config import ROOT

CONTRACT_PATH = ROOT / "include" / "contracts" / "landing.yml"


def _parse_timestamp(value: str) -> datetime:
    ts = datetime.fromisoformat(value)
    if ts.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return ts


def _parse_numeric(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    # PostgreSQL numeric: up to 131072 digits before the decimal point and 16383 after it; only a long value
    # or one with an exponent can have more (the string tests spare the common case the costly as_tuple())
    if (len(value) > 16383 or "e" in value or "E" in value) and (
            number.adjusted() > 131071 or number.as_tuple().exponent < -16383):
        raise ValueError(f"out of range for a PostgreSQL numeric: {value[:40]!r}")
    return number


def _integer_parser(bits: int) -> Callable[[str], int]:
    """An int parser that rejects what PostgreSQL's integer (32) or bigint (64) column would refuse."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"out of range for a {bits}-bit integer: {value!r}")
        return number
    return parse


def _parse_text(value: str) -> str:
    if not value:
        raise ValueError("missing value")
    if "\x00" in value:
        raise ValueError("contains a NUL character, which PostgreSQL text cannot hold")
    return value


# Each parser rejects every value its PostgreSQL column would refuse, so a bad value quarantines its
# row instead of failing the COPY of the whole file; each rejects an empty string too (ingest reads an
# empty optional value as NULL without calling it). The values go to a binary COPY, typed by the contract.
PARSERS: dict[str, Callable[[str], object]] = {
    "bigint": _integer_parser(64),
    "integer": _integer_parser(32),
    "numeric": _parse_numeric,
    "text": _parse_text,
    "date": date.fromisoformat,
    "timestamptz": _parse_timestamp,
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class FileFormat:
    """How a feed's files are written (`format:` in the contract): text encoding and field delimiter."""

    encoding: str = "utf-8"
    delimiter: str = ","


@dataclass(frozen=True)
class Feed:
    name: str
    mandatory: bool
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    format: FileFormat = field(default_factory=FileFormat)
    currency: str = "EUR"  # ISO 4217 code of the feed's money columns (`currency:` in the contract)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


@cache
def load_contract(path: Path = CONTRACT_PATH) -> dict[str, Feed]:
    """Read the contract file into `Feed`s, checking every type is known."""
    raw = yaml.safe_load(path.read_text())
    feeds = {}
    for name, spec in raw["feeds"].items():
        cols = []
        for col, cspec in spec["columns"].items():
            if cspec["type"] not in PARSERS:
                raise ValueError(f"{path}: feed {name}, column {col}: unknown type {cspec['type']!r}")
            cols.append(Column(col, cspec["type"], bool(cspec.get("required", False))))
        currency = str(spec.get("currency", "EUR"))
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError(f"{path}: feed {name}, currency: an ISO 4217 code such as EUR or USD, not {currency!r}")
        feeds[name] = Feed(name, bool(spec.get("mandatory", False)), tuple(spec["key"]), tuple(cols),
                           _file_format(path, name, spec.get("format") or {}), currency)
    return feeds


def currency(path: Path = CONTRACT_PATH) -> str:
    """The currency of the shop's money: the orders feed's (order amounts, and every revenue, spend and profit
    figure built from them)."""
    return load_contract(path)["orders"].currency


def _file_format(path: Path, feed: str, spec: dict) -> FileFormat:
    """A feed's `format:` block, checked: a known encoding, a one-character delimiter, no other keys."""
    unknown = set(spec) - {"encoding", "delimiter"}
    if unknown:
        raise ValueError(f"{path}: feed {feed}, format: unknown key(s) {', '.join(sorted(unknown))} "
                         "(known: encoding, delimiter)")
    fmt = FileFormat(**spec)
    try:
        codecs.lookup(fmt.encoding)
    except LookupError:
        raise ValueError(f"{path}: feed {feed}, format.encoding: unknown encoding {fmt.encoding!r}") from None
    if len(fmt.delimiter) != 1 or fmt.delimiter in "\"\r\n":
        raise ValueError(f"{path}: feed {feed}, format.delimiter: one character other than a quote or line end, "
                         f"not {fmt.delimiter!r}")
    return fmt
