"""Read feature rows of a model spec from the warehouse into pandas (COPY as CSV: fast, and lean on memory)."""

from __future__ import annotations

import io
from datetime import date

import pandas as pd
import psycopg
from psycopg import sql

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


def _frame(settings: Settings, spec: ModelSpec, query: sql.Composable) -> pd.DataFrame:
    buf = io.BytesIO()
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn, conn.cursor() as cur:
        with cur.copy(sql.SQL("copy ({}) to stdout with (format csv, header true)").format(query)) as copy:
            for block in copy:
                buf.write(block)
    buf.seek(0)
    dtypes = {"customer_id": "int64", **{c: "float64" for c in spec.features.numeric},
              **{c: "object" for c in spec.features.categorical}, spec.label: "float64"}
    return pd.read_csv(buf, dtype=dtypes, parse_dates=["as_of_date"], keep_default_na=False,
                       na_values={c: [""] for c in dtypes})


def labelled(settings: Settings, spec: ModelSpec) -> pd.DataFrame:
    """All rows whose label has matured, ordered by as-of date and customer."""
    return _frame(settings, spec, labelled_query(spec))


def latest_as_of(settings: Settings, spec: ModelSpec) -> date | None:
    """The most recent as-of date in the spec's table."""
    schema, table = spec.table.split(".")
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        row = conn.execute(
            sql.SQL("select max(as_of_date) from {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        ).fetchone()
    return row[0]


def at(settings: Settings, spec: ModelSpec, as_of: date) -> pd.DataFrame:
    """Feature rows (no label) for one as-of date, ordered by customer."""
    query = sql.SQL("{} where as_of_date = {} order by customer_id").format(
        _select(spec, with_label=False), sql.Literal(as_of))
    return _frame(settings, spec, query)
