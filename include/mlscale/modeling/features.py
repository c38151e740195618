"""Read feature rows of a model spec from the warehouse into pandas (COPY as CSV: fast, and lean on memory)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from datetime import date

import pandas as pd
from psycopg import sql

from mlscale import postgres
from mlscale.config import Settings
from mlscale.specs import ModelSpec

KEYS = ["customer_id", "as_of_date"]


def _select(spec: ModelSpec, with_label: bool) -> sql.Composed:
    cols = [sql.SQL("{}::float8 as {}").format(sql.Identifier(c), sql.Identifier(c)) for c in spec.features.numeric]
    cols += [sql.SQL("{}::text as {}").format(sql.Identifier(c), sql.Identifier(c)) for c in spec.features.categorical]
    if with_label:
        cols.append(sql.SQL("{}::float8 as {}").format(sql.Identifier(spec.label), sql.Identifier(spec.label)))
    schema, table = spec.table.split(".")
    return sql.SQL("select customer_id, as_of_date, {} from {}.{}").format(
        sql.SQL(", ").join(cols), sql.Identifier(schema), sql.Identifier(table)
    )


def labelled_query(spec: ModelSpec) -> sql.Composed:
    """All rows whose label has matured, ordered by as-of date and customer."""
    return sql.SQL("{} where {} is not null order by as_of_date, customer_id").format(
        _select(spec, with_label=True), sql.Identifier(spec.label)
    )


class _CopyStream(io.RawIOBase):
    """A read-only file over the blocks of a COPY ... TO STDOUT, so pandas parses while PostgreSQL sends."""

    def __init__(self, copy):
        self._blocks, self._pending = iter(copy), memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = memoryview(bytes(block))
        n = min(len(buffer), len(self._pending))
        buffer[:n], self._pending = self._pending[:n], self._pending[n:]
        return n


@contextlib.contextmanager
def _copy_out(settings: Settings, query: sql.Composable) -> Iterator[io.BufferedReader]:
    """The CSV (with header) of `query`, as a file that fills while PostgreSQL sends."""
    with postgres.warehouse(settings) as conn, conn.cursor() as cur:
        with cur.copy(sql.SQL("copy ({}) to stdout with (format csv, header true)").format(query)) as copy:
            yield io.BufferedReader(_CopyStream(copy), buffer_size=1 << 20)


def _csv_options(spec: ModelSpec) -> dict:
    """read_csv options that type the columns as the pipelines expect (NULL -> NaN)."""
    dtypes = {"customer_id": "int64", **{c: "float64" for c in spec.features.numeric},
              **{c: "object" for c in spec.features.categorical}, spec.label: "float64"}
    return {"dtype": dtypes, "parse_dates": ["as_of_date"], "keep_default_na": False,
            "na_values": {c: [""] for c in dtypes}}


def _frame(settings: Settings, spec: ModelSpec, query: sql.Composable) -> pd.DataFrame:
    with _copy_out(settings, query) as stream:
        return pd.read_csv(stream, **_csv_options(spec))


def labelled(settings: Settings, spec: ModelSpec) -> pd.DataFrame:
    """All rows whose label has matured, ordered by as-of date and customer."""
    return _frame(settings, spec, labelled_query(spec))


def latest_as_of(settings: Settings, spec: ModelSpec) -> date | None:
    """The most recent as-of date in the spec's table."""
    schema, table = spec.table.split(".")
    with postgres.warehouse(settings) as conn:
        row = conn.execute(
            sql.SQL("select max(as_of_date) from {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        ).fetchone()
    return row[0]


def _at_query(spec: ModelSpec, as_of: date, ordered: bool = True) -> sql.Composed:
    return sql.SQL("{} where as_of_date = {}{}").format(
        _select(spec, with_label=False), sql.Literal(as_of), sql.SQL(" order by customer_id" if ordered else ""))


def at(settings: Settings, spec: ModelSpec, as_of: date) -> pd.DataFrame:
    """Feature rows (no label) for one as-of date, ordered by customer."""
    return _frame(settings, spec, _at_query(spec, as_of))


def chunks_at(settings: Settings, spec: ModelSpec, as_of: date, rows: int) -> Iterator[pd.DataFrame]:
    """The rows of `at`, `rows` at a time, parsed while they stream in (memory bounded by `rows`). In no particular
    order: PostgreSQL starts sending at once instead of sorting the whole as-of date first."""
    with _copy_out(settings, _at_query(spec, as_of, ordered=False)) as stream:
        yield from pd.read_csv(stream, chunksize=rows, **_csv_options(spec))
