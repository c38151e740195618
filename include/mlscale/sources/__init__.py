"""Sources besides landing files (include/contracts/sources.yml): an operational database, an event stream.

Both load into raw.* through the landing contract and the ingest ledger (`ingest.load_delivery`), so
warehouse_etl and everything after it treat a source's batch as it treats a landing file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from mlscale.config import ROOT, Settings
from mlscale.data.contract import load_contract

SOURCES_PATH = ROOT / "include" / "contracts" / "sources.yml"


def sources_path() -> Path:
    """The sources file: MLSCALE_SOURCES_FILE, else the shipped include/contracts/sources.yml."""
    return Path(os.environ.get("MLSCALE_SOURCES_FILE", SOURCES_PATH))


class ExtractFailed(RuntimeError):
    """A source cannot be extracted as configured (a required column missing, a batch rejected)."""


class SourceUnavailable(RuntimeError):
    """A source did not answer: nothing of this run was loaded past its last committed batch; rerun later."""


@dataclass(frozen=True)
class TableSpec:
    table: str
    feed: str
    cursor: str


@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # database | stream
    connection: str
    schedule: str | None = None  # the extract_<source> DAG's (cron or preset); None: triggered by hand
    tables: tuple[TableSpec, ...] = ()
    overlap_minutes: int = 10
    batch_rows: int = 50000
    stream: str = ""
    group: str = "mlscale"
    feed: str = ""
    dead_letter: str = ""
    batch_events: int = 5000
    claim_idle_seconds: int = 60


KNOWN = {
    "database": {"kind", "connection", "schedule", "tables", "overlap_minutes", "batch_rows"},
    "stream": {"kind", "connection", "schedule", "stream", "group", "feed", "dead_letter", "batch_events",
               "claim_idle_seconds"},
}


def load_sources(path: Path | None = None) -> dict[str, Source]:
    """The sources file (default: `sources_path()`), checked: known kinds and keys, feeds of the landing contract."""
    return _load_sources(path or sources_path())


@cache
def _load_sources(path: Path) -> dict[str, Source]:
    feeds = load_contract()
    sources = {}
    for name, spec in (yaml.safe_load(path.read_text()) or {}).get("sources", {}).items():
        kind = spec.get("kind")
        if kind not in KNOWN:
            raise ValueError(f"{path}: source {name}: kind must be one of {', '.join(KNOWN)}, not {kind!r}")
        unknown = set(spec) - KNOWN[kind]
        if unknown:
            raise ValueError(f"{path}: source {name}: unknown key(s) {', '.join(sorted(unknown))} for a {kind} source")
        if "connection" not in spec:
            raise ValueError(f"{path}: source {name}: `connection` (an Airflow connection id) is required")
        args = {k: v for k, v in spec.items() if k not in ("kind", "tables")}
        if kind == "database":
            tables = []
            for table, t in (spec.get("tables") or {}).items():
                if t.get("feed") not in feeds:
                    raise ValueError(f"{path}: source {name}, table {table}: feed {t.get('feed')!r} is not in the "
                                     f"landing contract ({', '.join(feeds)})")
                tables.append(TableSpec(table, t["feed"], t.get("cursor", "updated_at")))
            if not tables:
                raise ValueError(f"{path}: source {name}: no tables")
            args["tables"] = tuple(tables)
        elif spec.get("feed") not in feeds or not spec.get("stream") or not spec.get("dead_letter"):
            raise ValueError(f"{path}: source {name}: a stream source needs `stream`, `dead_letter` and `feed` (one "
                             f"of {', '.join(feeds)})")
        sources[name] = Source(name=name, kind=kind, **args)
    return sources


def source(name: str) -> Source:
    """One source of the sources file, or a ValueError naming the ones there are."""
    sources = load_sources()
    if name not in sources:
        raise ValueError(f"no source {name!r} in {sources_path()} (sources: {', '.join(sources) or 'none'})")
    return sources[name]


def load_batch(conn, feed, body: bytes, label: str, delivered):
    """One batch a source wrote (CSV `body` in the feed's format, named by `label`: source, table or stream, range)
    through `ingest.load_delivery` in the caller's transaction; its ledger key hashes the label with the rows, so
    the same rows at another range (a row changed back) are a new delivery. Raises ExtractFailed when rejected."""
    import hashlib

    from mlscale.data.ingest import load_delivery

    res = load_delivery(conn, feed, body, hashlib.sha256(label.encode() + b"\n" + body).hexdigest(), label, delivered)
    if res.status == "rejected":
        raise ExtractFailed(f"{label}: the batch was rejected: {res.error}")
    return res


def embedded_default(settings: Settings, conn_id: str) -> dict:
    """The connection used when `conn_id` is not defined: the embedded SQLite shop database under the state
    folder for a database source, Redis on this machine for a stream."""
    kinds = {s.connection: s.kind for s in load_sources().values()}
    if kinds.get(conn_id) == "database":
        return {"conn_type": "sqlite", "host": str(settings.state_dir / f"shop_db{settings.db_suffix}.sqlite")}
    return {"conn_type": "redis", "host": "127.0.0.1", "port": 6379, "schema": "0"}


def connection(settings: Settings, conn_id: str):
    """The Airflow connection `conn_id` (UI, environment or secrets backend), else the embedded default."""
    from mlscale.airflow.connections import connection as airflow_connection

    return airflow_connection(conn_id, embedded_default(settings, conn_id))
