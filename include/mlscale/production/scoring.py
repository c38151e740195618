"""Batch scoring: the Production model (and a Staging challenger, in shadow) into the warehouse.

Features stream in with COPY and are parsed and scored in chunks, so memory holds one chunk plus
one score per customer. Each (model, as-of date) is a partition of its table, filled while empty and indexed
once, then swapped for the old one in one transaction: a rerun never duplicates, and never deletes under an index.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, timedelta

import numpy as np
from psycopg import sql

from mlscale import postgres, registry
from mlscale.modeling import artifacts, features, judging
from mlscale.config import Settings
from mlscale.specs import ModelSpec

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
TABLES = {"production": "predictions", "staging": "shadow_predictions"}
# One partition per (model, as-of date); readers query the parent.
PREDICTIONS_DDL = """
create schema if not exists ml;
create table if not exists ml.{table} (
    model text not null,
    model_version text not null,
    as_of_date date not null,
    customer_id bigint not null,
    score double precision not null,
    decile smallint not null check (decile between 1 and 10),
    scored_at timestamptz not null default now(),
    primary key (model, as_of_date, customer_id)
) partition by range (model, as_of_date);
"""
PARTITION_NAME_MAX = 58  # PostgreSQL's identifiers have 63 bytes; the primary key is named <partition>_pkey


class NoProductionVersion(registry.RegistryError):
    """The model has no Production version yet: nothing to score (score_<model> skips, it does not fail)."""


def deciles(scores: np.ndarray) -> np.ndarray:
    """Decile 1 holds the highest scores, 10 the lowest (ties share the lower rank)."""
    if len(scores) == 0:
        return np.array([], dtype=int)
    order = (-scores).argsort(kind="stable")
    ranks = np.empty(len(scores), dtype=int)
    ranks[order] = np.arange(len(scores))
    return (ranks * 10 // len(scores)) + 1


def create_tables(settings: Settings) -> None:
    """Create ml.predictions and ml.shadow_predictions if no scoring run has yet (readers need them to exist)."""
    with postgres.warehouse(settings) as conn, conn.transaction():
        for table in TABLES.values():
            _ensure_table(conn, table)


def _ensure_table(conn, table: str) -> None:
    """Create the partitioned ml.<table>; one left unpartitioned by an earlier release has its rows moved in."""
    kind = conn.execute("select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                        " where n.nspname = 'ml' and c.relname = %s", (table,)).fetchone()
    if kind and kind[0] == "p":
        return
    if kind:
        conn.execute(sql.SQL("alter table {} rename to {}").format(sql.Identifier("ml", table),
                                                                  sql.Identifier(f"{table}_unpartitioned")))
        conn.execute(sql.SQL("alter table {} rename constraint {} to {}").format(
            sql.Identifier("ml", f"{table}_unpartitioned"), sql.Identifier(f"{table}_pkey"),
            sql.Identifier(f"{table}_unpartitioned_pkey")))
    postgres.create_if_missing(conn, sql.SQL(PREDICTIONS_DDL.format(table=table)))
    if kind:
        old = sql.Identifier("ml", f"{table}_unpartitioned")
        keys = conn.execute(sql.SQL("select distinct model, as_of_date from {}").format(old)).fetchall()
        for model, as_of in keys:
            _create_partition(conn, table, model, as_of)
        conn.execute(sql.SQL("insert into {} select * from {}").format(sql.Identifier("ml", table), old))
        conn.execute(sql.SQL("drop table {}").format(old))
        log.info("ml.%s: moved the rows of %d (model, as-of date) pairs into partitions", table, len(keys))


def _partition_name(table: str, model: str, as_of: date) -> str:
    name = f"{table}_{model}_{as_of:%Y%m%d}"
    if len(name) > PARTITION_NAME_MAX:
        name = f"{table}_{hashlib.sha256(model.encode()).hexdigest()[:16]}_{as_of:%Y%m%d}"
    return name


def _bounds(model: str, as_of: date) -> sql.Composed:
    return sql.SQL("for values from ({}, {}) to ({}, {})").format(
        sql.Literal(model), sql.Literal(as_of), sql.Literal(model), sql.Literal(as_of + timedelta(days=1)))


def _create_partition(conn, table: str, model: str, as_of: date) -> None:
    conn.execute(sql.SQL("create table {} partition of {} {}").format(
        sql.Identifier("ml", _partition_name(table, model, as_of)), sql.Identifier("ml", table), _bounds(model, as_of)))


COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # the signature, no flags, no header extension
PG_EPOCH = date(2000, 1, 1)


def _binary_copy(model: str, version: str, as_of: date, ids: np.ndarray, scores: np.ndarray,
                 ranks: np.ndarray) -> bytes:
    """The rows (model, model_version, as_of_date, customer_id, score, decile) in COPY's binary format, built by
    numpy in one pass: every row has the same layout (the two texts are the same in every row), so a structured
    array of big-endian fields is the file. PostgreSQL takes it in half the time of the same rows as CSV (0.21 s
    against 0.40 s for 500,000), and psycopg's own binary rows (Copy.write_row) are built one row at a time."""
    texts = model.encode(), version.encode()
    layout = np.dtype([("fields", ">i2"), ("model_len", ">i4"), ("model", f"S{len(texts[0])}"),
                       ("version_len", ">i4"), ("version", f"S{len(texts[1])}"), ("as_of_len", ">i4"),
                       ("as_of", ">i4"), ("id_len", ">i4"), ("id", ">i8"), ("score_len", ">i4"), ("score", ">f8"),
                       ("decile_len", ">i4"), ("decile", ">i2")])
    rows = np.empty(len(ids), dtype=layout)
    for field, value in (("fields", 6), ("model_len", len(texts[0])), ("model", texts[0]),
                         ("version_len", len(texts[1])), ("version", texts[1]), ("as_of_len", 4),
                         ("as_of", (as_of - PG_EPOCH).days), ("id_len", 8), ("id", ids), ("score_len", 8),
                         ("score", scores), ("decile_len", 2), ("decile", ranks)):
        rows[field] = value
    return COPY_SIGNATURE + rows.tobytes() + b"\xff\xff"  # -1 fields: the end of the data


def write_scores(conn, table: str, model: str, version: str, as_of: date, ids: np.ndarray, scores: np.ndarray) -> int:
    """Replace the (model, as-of date) partition of ml.<table> with these scores, in the caller's transaction.

    The new partition is filled by COPY while it has no index, indexed once, then attached in place of the old one;
    rows are ranked by customer id first, so tied scores get the same deciles whatever order they were read in.
    Return how many rows it replaced."""
    _ensure_table(conn, table)
    order = ids.argsort(kind="stable")
    ids, scores = ids[order], scores[order]
    name = _partition_name(table, model, as_of)
    parent, part, filling = (sql.Identifier("ml", t) for t in (table, name, f"{name}_new"))
    conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"ml.{name}",))  # one writer per partition
    conn.execute(sql.SQL("create table {} (like {} including defaults including constraints)").format(filling, parent))
    with conn.cursor() as cur:
        copy = sql.SQL("copy {} (model, model_version, as_of_date, customer_id, score, decile) from stdin"
                       " with (format binary)").format(filling)
        with cur.copy(copy) as cp:
            cp.write(_binary_copy(model, version, as_of, ids, scores, deciles(scores)))
    replaced = 0
    if postgres.table_exists(conn, f"ml.{name}"):
        replaced = conn.execute(sql.SQL("select count(*) from {}").format(part)).fetchone()[0]
        conn.execute(sql.SQL("alter table {} detach partition {}").format(parent, part))
        conn.execute(sql.SQL("drop table {}").format(part))
    conn.execute(sql.SQL("alter table {} add constraint {} primary key (model, as_of_date, customer_id)").format(
        filling, sql.Identifier(f"{name}_pkey")))
    conn.execute(sql.SQL("alter table {} rename to {}").format(filling, sql.Identifier(name)))
    conn.execute(sql.SQL("alter table {} attach partition {} {}").format(parent, part, _bounds(model, as_of)))
    return replaced


def score(settings: Settings, spec: ModelSpec, as_of: date | None = None, chunk_rows: int = CHUNK_ROWS) -> dict:
    """Score every customer of `as_of` (default: latest) with models:/<name>@production, and @staging in shadow."""
    versions = {role: registry.alias_version(settings, spec.name, role) for role in TABLES}
    if versions["production"] is None:
        raise NoProductionVersion(f"model {spec.name} has no production version yet; nothing to score until "
                                  f"promote_{spec.name} promotes one")
    if versions["staging"] == versions["production"]:
        versions["staging"] = None
    versions = {role: v for role, v in versions.items() if v}
    as_of = as_of or features.latest_as_of(settings, spec)
    if as_of is None:
        raise LookupError(f"{spec.table} is empty; run warehouse_etl first")
    models = {role: artifacts.load_verified(settings, spec.name, v)[0] for role, v in versions.items()}
    ids, scores = [], {role: [] for role in models}
    for i, chunk in enumerate(features.chunks_at(settings, spec, as_of, chunk_rows), 1):
        ids.append(chunk["customer_id"].to_numpy(dtype=np.int64))
        for role, model in models.items():
            scores[role].append(judging.predict(spec, model, chunk[spec.feature_names]))
        log.info("%s as-of %s: scored chunk %d (%d customers so far)", spec.name, as_of, i, sum(map(len, ids)))
    all_ids = np.concatenate(ids) if ids else np.array([], dtype=np.int64)
    result = {"model": spec.name, "as_of_date": str(as_of), "rows": len(all_ids)}
    with postgres.warehouse(settings) as conn, conn.transaction():
        for role, model_scores in scores.items():
            values = np.concatenate(model_scores) if model_scores else np.array([])
            replaced = write_scores(conn, TABLES[role], spec.name, versions[role], as_of, all_ids, values)
            result[role] = {"version": versions[role], "table": f"ml.{TABLES[role]}", "replaced": replaced}
            log.info("%s v%s (%s) scored %d customers for as-of %s into ml.%s (replaced %d earlier rows)",
                     spec.name, versions[role], role, len(all_ids), as_of, TABLES[role], replaced)
    result["version"] = versions["production"]
    return result
