"""Small helpers the integration and e2e tests share: run dbt for real, read the warehouse."""

from pathlib import Path

import pandas as pd
import psycopg

from mlscale.datagen import ShopParams, generate
from mlscale.ingest import ingest_landing
from mlscale.registry import forget as drop_registered_model  # noqa: F401 (re-exported for the tests)
from mlscale.warehouse import dbt, drop_schemas as empty_warehouse  # noqa: F401


def query(settings, sql: str) -> pd.DataFrame:
    """Rows of `sql` on the warehouse as a DataFrame."""
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        cur = conn.execute(sql)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def scalar(settings, sql: str, *args):
    """The first column of the first row of `sql` on the warehouse."""
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        return conn.execute(sql, args or None).fetchone()[0]


def build_shop(settings, landing: Path, params: ShopParams) -> None:
    """An empty warehouse, then a generated shop through COPY ingest and `dbt build` (no Airflow)."""
    empty_warehouse(settings)
    generate(params, landing)
    ingest_landing(settings.dsn(settings.warehouse_db), landing)
    dbt(settings, "build")
