"""Bring up everything the pipeline needs: PostgreSQL, databases, Airflow metadata, dbt manifest, MLflow."""

from __future__ import annotations

import logging
import os
import time

from mlscale import postgres
from mlscale.local import services
from mlscale.config import Settings

log = logging.getLogger(__name__)


def setup(settings: Settings, manifest: bool = True) -> Settings:
    """Make every service answer; return settings that point at them (and export them to this process).

    `manifest=False` leaves the dbt manifest as it is (the tests build it once for all their workers)."""
    steps = []

    def step(name, fn, *args):
        t0 = time.monotonic()
        out = fn(*args)
        steps.append((name, time.monotonic() - t0))
        log.info("%s ready in %.1fs", name, steps[-1][1])
        return out

    dsn = step("postgres", postgres.ensure_server, settings)
    if settings.pg_dsn != dsn:
        settings = Settings.from_env()
    created = step("databases", postgres.ensure_databases, settings,
                   [settings.warehouse_db, settings.airflow_db, settings.mlflow_db])
    if created:
        log.info("created databases: %s", ", ".join(created))
    os.environ.update(settings.service_env())
    step("airflow db migrate", services.migrate_airflow_db, settings)
    if manifest:
        step("dbt manifest", services.build_dbt_manifest, settings)
    step("mlflow server", services.ensure_mlflow, settings)
    return settings
