"""Read feature rows of a model spec from the warehouse into pandas."""

from __future__ import annotations

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


def _frame(settings: Settings, query: sql.Composable, params: tuple = ()) -> pd.DataFrame:
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn, conn.cursor() as cur:
        cur.execute(query, params)
        names = [d.name for d in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=names)
    if not frame.empty:
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"])
    return frame


def labelled(settings: Settings, spec: ModelSpec) -> pd.DataFrame:
    """All rows whose label has matured, ordered by as-of date and customer."""
    query = sql.SQL("{} where {} is not null order by as_of_date, customer_id").format(
        _select(spec, with_label=True), sql.Identifier(spec.label)
    )
    return _frame(settings, query)


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
    query = sql.SQL("{} where as_of_date = %s order by customer_id").format(_select(spec, with_label=False))
    return _frame(settings, query, (as_of,))
