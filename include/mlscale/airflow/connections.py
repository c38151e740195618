"""Airflow Connections for the bundle's sources: looked up by id (UI, environment, secrets backend), with a default."""

from __future__ import annotations

import logging
import os

from airflow.sdk import BaseHook, Connection
from airflow.sdk.exceptions import AirflowNotFoundException

log = logging.getLogger(__name__)


def connection(conn_id: str, default: dict) -> Connection:
    """The Airflow connection `conn_id`, else one made of `default` (Connection fields), which is then set as
    AIRFLOW_CONN_<ID> in this process's environment so that the provider's hook finds it by its id too."""
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        conn = Connection(conn_id=conn_id, **default)
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = conn.as_json()
        log.info("Airflow connection %s is not defined: using the embedded default %s://%s", conn_id, conn.conn_type,
                 conn.host)
        return conn
