"""Small helpers the integration and e2e tests share: run dbt for real, read the warehouse."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg


def dbt(settings, *args: str) -> str:
    """Run the dbt CLI against the settings' warehouse; fail the test with dbt's output when it fails."""
    out = subprocess.run([str(Path(sys.executable).parent / "dbt"), *args, "--project-dir", str(settings.dbt_project_dir)],
                         env={**os.environ, **settings.service_env()}, capture_output=True, text=True,
                         cwd=settings.dbt_project_dir)
    assert out.returncode == 0, out.stdout[-4000:]
    return out.stdout


def query(settings, sql: str) -> pd.DataFrame:
    """Rows of `sql` on the warehouse as a DataFrame."""
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        cur = conn.execute(sql)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def scalar(settings, sql: str, *args):
    """The first column of the first row of `sql` on the warehouse."""
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        return conn.execute(sql, args or None).fetchone()[0]


def empty_warehouse(settings) -> None:
    """Drop every schema of the test warehouse except the system ones."""
    with psycopg.connect(settings.dsn(settings.warehouse_db), autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(
            "select nspname from pg_namespace where nspname not in ('public', 'information_schema')"
            " and nspname not like 'pg\\_%'")]
        for schema in schemas:
            conn.execute(f'drop schema "{schema}" cascade')


def drop_registered_model(settings, name: str) -> None:
    """Forget every version of registered model `name` on the test MLflow server."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_uri)
    client = mlflow.MlflowClient()
    if client.search_registered_models(f"name='{name}'"):
        client.delete_registered_model(name)
