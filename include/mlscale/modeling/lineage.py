"""Where a model's data came from: the warehouse table as an MLflow dataset, the dbt build, the code version."""

from __future__ import annotations

import hashlib
import os
import subprocess
from functools import cached_property
from typing import Any

import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.types.schema import ColSpec, DataType, Schema

from mlscale import postgres
from mlscale.config import Settings
from mlscale.postgres import table_exists

# The post-hook macro record_build (dbt_project/macros) writes one row here per build of a feature mart.
BUILDS_TABLE = "ops.dbt_model_builds"


class WarehouseTableSource(DatasetSource):
    """A PostgreSQL table in the mlscale warehouse, with the query that selected the rows."""

    def __init__(self, uri: str, query: str):
        self.uri, self.query = uri, query

    @staticmethod
    def _get_source_type() -> str:
        return "postgres_table"

    def load(self) -> Any:
        raise NotImplementedError("read the table with mlscale.modeling.features, which knows the warehouse connection")

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> "WarehouseTableSource":
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "query": self.query}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> "WarehouseTableSource":
        return cls(source_dict["uri"], source_dict["query"])


def table_uri(settings: Settings, table: str) -> str:
    """postgres://host:port/<warehouse db>/<schema>/<table> (the same form as the Airflow Assets)."""
    p = settings.conn_params(settings.warehouse_db)
    return f"postgres://{p['host']}:{p['port']}/{settings.warehouse_db}/{table.replace('.', '/')}"


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 over the rows (values and order), the column names and the row count."""
    h = hashlib.sha256()
    h.update(",".join(frame.columns).encode())
    h.update(str(len(frame)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


# MLflow's column type for each kind of numpy dtype the feature frames hold (features._csv_options).
_COLUMN_TYPES = {"i": DataType.long, "u": DataType.long, "f": DataType.double, "b": DataType.boolean,
                 "M": DataType.datetime, "O": DataType.string}


def frame_schema(frame: pd.DataFrame) -> Schema:
    """The schema MLflow infers for a PandasDataset of `frame`, column by column in numpy.

    MLflow 3.17 decides whether a column is required by looking at every value in Python (mlflow#13085, open):
    about 40 s for a 100,000-customer shop's training rows and minutes at a million. The frames here hold only the
    dtypes of _COLUMN_TYPES, so the type comes from the dtype and `required` from one vectorised isna.
    """
    unknown = [f"{c} ({frame[c].dtype})" for c in frame.columns if frame[c].dtype.kind not in _COLUMN_TYPES]
    if unknown:
        raise TypeError(f"no MLflow column type for {', '.join(unknown)}")
    missing = frame.isna().any()
    return Schema([ColSpec(type=_COLUMN_TYPES[frame[c].dtype.kind], name=c, required=not bool(missing[c]))
                   for c in frame.columns])


class FrameDataset(PandasDataset):
    """A PandasDataset whose schema is `frame_schema` (what MLflow infers, without its per-value loop)."""

    @cached_property
    def schema(self) -> Schema:
        return frame_schema(self.df)


def dataset(settings: Settings, table: str, frame: pd.DataFrame, query: str, label: str, name: str,
            digest: str | None = None) -> FrameDataset:
    """An MLflow dataset for `frame` whose digest covers its content (MLflow stores 36 characters of it);
    `digest`: its content_hash, when the caller has it already."""
    return FrameDataset(frame, source=WarehouseTableSource(table_uri(settings, table), query), targets=label,
                        name=name, digest=(digest or content_hash(frame))[:32])


def profile(frame: pd.DataFrame, digest: str | None = None) -> dict[str, str]:
    """Row count, as-of range and full content hash (`digest`, when the caller has it), as tags for the logged
    dataset."""
    return {"rows": str(len(frame)), "as_of_min": str(frame["as_of_date"].min().date()),
            "as_of_max": str(frame["as_of_date"].max().date()), "content_sha256": digest or content_hash(frame)}


def last_dbt_build(settings: Settings, table: str) -> dict[str, str]:
    """The dbt invocation that last built `schema.table` (from the record_build post-hook), or {}."""
    relation = table.split(".")[1]
    with postgres.warehouse(settings) as conn:
        if not table_exists(conn, BUILDS_TABLE):
            return {}
        row = conn.execute(f"select invocation_id, built_at from {BUILDS_TABLE} where relation = %s"
                           " order by built_at desc limit 1", (relation,)).fetchone()
    return {"invocation_id": row[0], "built_at": row[1].isoformat()} if row else {}


def git_commit(settings: Settings) -> str:
    """The bundle's git commit (MLSCALE_GIT_COMMIT wins; '+dirty' when the work tree has changes), or 'unknown'."""
    if os.environ.get("MLSCALE_GIT_COMMIT"):
        return os.environ["MLSCALE_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(settings.root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(settings.root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head
