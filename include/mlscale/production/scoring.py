"""Batch scoring: the Production model (and a Staging challenger, in shadow) into the warehouse.

Features stream in with COPY and are parsed and scored in chunks, so memory holds one chunk plus
one score per customer. Each (model, as-of date) is replaced in one transaction: a rerun never duplicates.
"""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd
from psycopg import sql

from mlscale import postgres, registry
from mlscale.modeling import artifacts, features, judging
from mlscale.config import Settings
from mlscale.specs import ModelSpec

log = logging.getLogger(__name__)

CHUNK_ROWS = 50_000
TABLES = {"production": "predictions", "staging": "shadow_predictions"}
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
);
"""


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
    with postgres.warehouse(settings) as conn:
        for table in TABLES.values():
            conn.execute(sql.SQL(PREDICTIONS_DDL.format(table=table)))


def _write(conn, table: str, spec: ModelSpec, version: str, as_of: date, ids: np.ndarray, scores: np.ndarray,
           chunk_rows: int) -> int:
    """Replace the (model, as-of date) rows of ml.<table> (COPY, CSV in chunks); return how many were replaced."""
    conn.execute(sql.SQL(PREDICTIONS_DDL.format(table=table)))
    target = sql.Identifier("ml", table)
    rows = pd.DataFrame({"model": spec.name, "model_version": version, "as_of_date": as_of.isoformat(),
                         "customer_id": ids, "score": scores, "decile": deciles(scores)})
    with conn.cursor() as cur:
        cur.execute(sql.SQL("delete from {} where model = %s and as_of_date = %s").format(target), (spec.name, as_of))
        replaced = cur.rowcount
        copy = sql.SQL("copy {} (model, model_version, as_of_date, customer_id, score, decile) from stdin"
                       " with (format csv)").format(target)
        with cur.copy(copy) as cp:
            for start in range(0, len(rows), chunk_rows):
                cp.write(rows.iloc[start:start + chunk_rows].to_csv(header=False, index=False).encode())
    return replaced


def score(settings: Settings, spec: ModelSpec, as_of: date | None = None, chunk_rows: int = CHUNK_ROWS) -> dict:
    """Score every customer of `as_of` (default: latest) with models:/<name>@production, and @staging in shadow."""
    versions = {role: registry.alias_version(settings, spec.name, role) for role in TABLES}
    if versions["production"] is None:
        raise registry.RegistryError(f"model {spec.name} has no production version; run promote_{spec.name} first")
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
            replaced = _write(conn, TABLES[role], spec, versions[role], as_of, all_ids, values, chunk_rows)
            result[role] = {"version": versions[role], "table": f"ml.{TABLES[role]}", "replaced": replaced}
            log.info("%s v%s (%s) scored %d customers for as-of %s into ml.%s (replaced %d earlier rows)",
                     spec.name, versions[role], role, len(all_ids), as_of, TABLES[role], replaced)
    result["version"] = versions["production"]
    return result
