"""Predictions whose outcome is now known: the dbt view `intermediate.int_matured_predictions`, read here.

The view joins each model's Production predictions (ml.predictions) to the matured labels of customer_features.
Which label, campaign value and top-k share belong to which model comes from the model specs, passed to dbt as
the `model_campaigns` var. The KPI build (business_report) builds the view with the KPI marts; monitoring and
the replay read it too, so `matured` builds it first when it is missing or was built for other campaigns. The view
records the campaigns it was built with as its comment, which is how a reader tells.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from typing import Iterator

import pandas as pd

from mlscale import postgres
from mlscale.config import Settings
from mlscale.specs import ModelSpec, load_specs

log = logging.getLogger(__name__)

VIEW = "intermediate.int_matured_predictions"
_LOCK = "mlscale.int_matured_predictions"  # two monitors (or a monitor and the KPI build) never build it at once


def campaigns(specs: dict[str, ModelSpec]) -> dict[str, dict]:
    """The dbt var model_campaigns: per model, the label, the campaign's value column and top-k share."""
    return {name: {"label": s.label, "value_column": s.business.value_column, "top_k_share": s.business.top_k_share}
            for name, s in specs.items()}


def dbt_vars(specs: dict[str, ModelSpec]) -> str:
    """`--vars` for a dbt command that builds the view (alone or with the KPI marts)."""
    return json.dumps({"model_campaigns": campaigns(specs)})


@contextmanager
def building(settings: Settings) -> Iterator[None]:
    """Hold the lock under which the view is (re)built, for as long as the block runs."""
    with postgres.warehouse(settings, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext(%s))", (_LOCK,))
        try:
            yield
        finally:
            conn.execute("select pg_advisory_unlock(hashtext(%s))", (_LOCK,))


def built_for(settings: Settings) -> dict[str, dict] | None:
    """The campaigns the view was last built with (its comment), or None when it does not exist."""
    with postgres.warehouse(settings) as conn:
        comment = conn.execute("select obj_description(to_regclass(%s), 'pg_class')", (VIEW,)).fetchone()[0]
    return json.loads(comment) if comment else None


def ensure_view(settings: Settings, spec: ModelSpec) -> None:
    """Build the view (dbt run, about 10 s) unless it exists for the shipped specs with `spec` in place of its
    namesake; ml.predictions must exist."""
    from mlscale.data.warehouse import dbt

    specs = {**load_specs(), spec.name: spec}
    wanted = json.loads(json.dumps(campaigns(specs)))
    if built_for(settings) == wanted:
        return
    with building(settings):
        if built_for(settings) == wanted:  # built while this run waited for the lock
            return
        log.info("building %s for %s", VIEW, ", ".join(sorted(specs)))
        dbt(settings, "run", "--select", "int_matured_predictions", "--vars", dbt_vars(specs))


def matured(settings: Settings, spec: ModelSpec, newest: bool = False) -> pd.DataFrame:
    """The model's predictions whose outcome is known: as_of_date, customer_id, model_version, score, outcome,
    oldest as-of date first; with `newest`, those of the newest as-of date only. Empty when nothing was scored
    yet."""
    columns = ["as_of_date", "customer_id", "model_version", "score", "outcome"]
    with postgres.warehouse(settings) as conn:
        if not postgres.table_exists(conn, "ml.predictions"):
            return pd.DataFrame(columns=columns)
    ensure_view(settings, spec)
    newest_only = f" and as_of_date = (select max(as_of_date) from {VIEW} where model = %(model)s)" if newest else ""
    with postgres.warehouse(settings) as conn:
        return postgres.frame(conn, f"select {', '.join(columns)} from {VIEW} where model = %(model)s{newest_only}"
                                    " order by as_of_date, customer_id", {"model": spec.name})
