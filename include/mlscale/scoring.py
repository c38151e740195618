"""Batch scoring with the Production model into ml.predictions (idempotent per model and as-of date)."""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import psycopg

from mlscale import features, registry, training
from mlscale.config import Settings
from mlscale.specs import ModelSpec

log = logging.getLogger(__name__)

PREDICTIONS_DDL = """
create schema if not exists ml;
create table if not exists ml.predictions (
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


def score(settings: Settings, spec: ModelSpec, as_of: date | None = None) -> dict:
    """Score every customer of `as_of` (default: latest) with models:/<name>@production; replace that day's rows."""
    version = registry.alias_version(spec.name, "production")
    if version is None:
        raise LookupError(f"model {spec.name} has no production version; run promote_{spec.name} first")
    as_of = as_of or features.latest_as_of(settings, spec)
    if as_of is None:
        raise LookupError(f"{spec.table} is empty; run warehouse_etl first")
    frame = features.at(settings, spec, as_of)
    model = registry.load_version(spec.name, version)
    scores = training.predict(spec, model, frame[spec.feature_names])
    ranks = deciles(scores)
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        conn.execute(PREDICTIONS_DDL)
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("delete from ml.predictions where model = %s and as_of_date = %s", (spec.name, as_of))
            replaced = cur.rowcount
            with cur.copy("copy ml.predictions (model, model_version, as_of_date, customer_id, score, decile) from stdin") as cp:
                for cid, s, d in zip(frame["customer_id"].tolist(), scores.tolist(), ranks.tolist()):
                    cp.write_row((spec.name, version, as_of, cid, s, d))
    log.info("%s v%s scored %d customers for as-of %s (replaced %d earlier rows)", spec.name, version, len(frame), as_of, replaced)
    return {"model": spec.name, "version": version, "as_of_date": str(as_of), "rows": len(frame), "replaced": replaced}
