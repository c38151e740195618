"""Promotion through the MLflow registry: Staging gate, Production gate, stages and aliases, audit rows."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass, field

import psycopg

from mlscale import evaluation, features, training
from mlscale.config import Settings
from mlscale.specs import ModelSpec, improvement

log = logging.getLogger(__name__)

AUDIT_DDL = """
create schema if not exists ops;
create table if not exists ops.model_promotions (
    id bigserial primary key,
    model text not null,
    from_version text,
    to_version text not null,
    stage text not null,
    decision text not null check (decision in ('promoted', 'rejected')),
    candidate_metrics jsonb,
    production_metrics jsonb,
    gates jsonb not null,
    reason text not null,
    airflow_run_id text,
    decided_at timestamptz not null default now()
);
"""


@dataclass
class Decision:
    model: str
    version: str
    decision: str  # promoted | rejected
    stage: str  # the stage the version reached (or stayed in)
    reason: str
    previous_production: str | None = None
    candidate_metrics: dict = field(default_factory=dict)
    production_metrics: dict = field(default_factory=dict)
    gates: dict = field(default_factory=dict)


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _transition(client, name: str, version: str, stage: str, archive_existing: bool = False) -> None:
    # Stages are deprecated in MLflow 3 but still the registry's lifecycle view; aliases are set alongside.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, version, stage, archive_existing_versions=archive_existing)


def alias_version(name: str, alias: str) -> str | None:
    """The version behind `alias`, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def newest_unstaged_version(name: str) -> str:
    """The most recently registered version that has no stage yet."""
    versions = [v for v in _client().search_model_versions(f"name='{name}'") if v.current_stage == "None"]
    if not versions:
        raise LookupError(f"model {name} has no registered version awaiting promotion; run train_{name} first")
    return str(max(versions, key=lambda v: int(v.version)).version)


def load_version(name: str, version: str):
    """The scikit-learn model of one registered version."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def evaluate_on_holdout(settings: Settings, spec: ModelSpec, versions: list[str]) -> dict[str, dict[str, float]]:
    """Re-evaluate registered versions now on the most recent matured as-of date (the same rows for all)."""
    frame = features.labelled(settings, spec)
    holdout = training.time_split(frame, spec.split.gap_days).test
    y = holdout[spec.label].to_numpy()
    return {v: evaluation.evaluate(spec, y, training.predict(spec, load_version(spec.name, v), holdout[spec.feature_names]))
            for v in versions}


def promote(settings: Settings, spec: ModelSpec, version: str | None = None, airflow_run_id: str | None = None) -> Decision:
    """Take `version` (default: newest unstaged) through the Staging and Production gates."""
    client = _client()
    version = version or newest_unstaged_version(spec.name)
    production = alias_version(spec.name, "production")
    compared = [version] + ([production] if production and production != version else [])
    scores = evaluate_on_holdout(settings, spec, compared)
    cand = scores[version]
    decision = Decision(spec.name, version, "rejected", "None", "", production, cand, scores.get(production, {}))

    # Staging gate: absolute floors, and the model loads from the registry and predicts (done above).
    floors = spec.promotion.staging.min_metrics
    failed = {m: (cand[m], floor) for m, floor in floors.items() if improvement(m, cand[m], floor) < 0}
    decision.gates["staging"] = {"passed": not failed, "floors": floors, "smoke_test": "passed"}
    if failed:
        decision.reason = "staging gate: " + ", ".join(f"{m}={v:.4f} worse than floor {f}" for m, (v, f) in failed.items())
        return _finish(settings, client, decision, airflow_run_id)
    _transition(client, spec.name, version, "Staging")
    client.set_registered_model_alias(spec.name, "staging", version)
    decision.stage = "Staging"
    log.info("%s v%s passed the staging gate: %s", spec.name, version, cand)

    # Production gate: beat the current Production version on the same holdout by the spec's margin.
    metric, margin = spec.primary_metric, spec.promotion.production.min_improvement
    if production and production != version:
        prod = scores[production]
        delta = improvement(metric, cand[metric], prod[metric])
        passed = delta >= margin
        decision.gates["production"] = {"passed": passed, "metric": metric, "improvement": delta, "margin": margin}
        if not passed:
            decision.reason = (f"production gate: {metric} {cand[metric]:.4f} vs production v{production} "
                               f"{prod[metric]:.4f} (improvement {delta:+.4f} < margin {margin})")
            return _finish(settings, client, decision, airflow_run_id)
    else:
        decision.gates["production"] = {"passed": True, "metric": metric, "note": "no production version yet"}

    _transition(client, spec.name, version, "Production", archive_existing=True)
    client.set_registered_model_alias(spec.name, "production", version)
    client.delete_registered_model_alias(spec.name, "staging")
    if production and production != version:
        client.set_registered_model_alias(spec.name, "previous_production", production)
    decision.decision, decision.stage = "promoted", "Production"
    if production and production != version:
        decision.reason = (f"{metric} {cand[metric]:.4f} vs production v{production} {scores[production][metric]:.4f}: "
                           f"improvement {decision.gates['production']['improvement']:+.4f} >= margin {margin}")
    else:
        decision.reason = f"first production version ({metric} {cand[metric]:.4f})"
    return _finish(settings, client, decision, airflow_run_id)


def _finish(settings: Settings, client, decision: Decision, airflow_run_id: str | None) -> Decision:
    """Audit the decision in ops.model_promotions and as a tag on the version."""
    (log.info if decision.decision == "promoted" else log.warning)(
        "%s v%s %s: %s", decision.model, decision.version, decision.decision.upper(), decision.reason)
    client.set_model_version_tag(decision.model, decision.version, "promotion", f"{decision.decision}: {decision.reason}")
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        conn.execute(AUDIT_DDL)
        conn.execute(
            "insert into ops.model_promotions (model, from_version, to_version, stage, decision, candidate_metrics,"
            " production_metrics, gates, reason, airflow_run_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (decision.model, decision.previous_production, decision.version, decision.stage, decision.decision,
             json.dumps(decision.candidate_metrics), json.dumps(decision.production_metrics),
             json.dumps(decision.gates), decision.reason, airflow_run_id),
        )
    return decision


def registry_state(name: str) -> list[dict]:
    """Every version of `name` with its stage and aliases, newest first."""
    client = _client()
    out = []
    for v in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version)):
        full = client.get_model_version(name, v.version)  # search results omit aliases
        out.append({"version": str(v.version), "stage": full.current_stage, "aliases": sorted(full.aliases or [])})
    return out


def decision_dict(decision: Decision) -> dict:
    """A JSON-friendly copy of a decision (for XCom and logs)."""
    return asdict(decision)
