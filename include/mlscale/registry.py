"""Promotion through the MLflow registry: gates, stages and aliases, one change at a time, audit rows.

A promotion has two steps, which the promote_<model> DAG runs as separate tasks (with a person's
approval in between when the spec asks for it): `evaluate` runs the gates and stages the version;
`switch` moves it to Production under a per-model lock, after a compare-and-set check that Production
is still the version it was evaluated against. `rollback` moves Production back. Every decision is a
row in ops.model_promotions and a tag on the version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field

import psycopg

from mlscale import artifacts, evaluation, features, gates, selection, training
from mlscale.baseline import measure_all
from mlscale.config import Settings
from mlscale.specs import ModelSpec

log = logging.getLogger(__name__)

DECISIONS = ("promoted", "rejected", "aborted", "rolled_back")
AUDIT_DDL = f"""
select pg_advisory_xact_lock(hashtext('mlscale.ops.model_promotions'));
create schema if not exists ops;
create table if not exists ops.model_promotions (
    id bigserial primary key,
    model text not null,
    from_version text,
    to_version text not null,
    stage text not null,
    decision text not null,
    candidate_metrics jsonb,
    production_metrics jsonb,
    gates jsonb not null,
    reason text not null,
    airflow_run_id text,
    decided_by text,
    decided_at timestamptz not null default now()
);
alter table ops.model_promotions add column if not exists decided_by text;
alter table ops.model_promotions drop constraint if exists model_promotions_decision_check;
alter table ops.model_promotions add constraint model_promotions_decision_check
    check (decision in ({", ".join(f"'{d}'" for d in DECISIONS)}));
"""


class RegistryError(RuntimeError):
    """A registry operation cannot run as asked (no such version, nothing to roll back to, ...)."""


@dataclass
class Decision:
    model: str
    version: str
    decision: str  # pending (gates passed, switch next) | promoted | rejected | aborted | rolled_back
    stage: str  # the stage the version reached (or stayed in)
    reason: str
    previous_production: str | None = None  # Production when the version was evaluated
    candidate_metrics: dict = field(default_factory=dict)
    production_metrics: dict = field(default_factory=dict)
    gates: dict = field(default_factory=dict)
    decided_by: str | None = None


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


def forget(settings: Settings, name: str) -> None:
    """Delete registered model `name` and all its versions (a replay starts from an empty registry)."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_uri)
    client = _client()
    if client.search_registered_models(f"name='{name}'"):
        client.delete_registered_model(name)


def version_tags(name: str, version: str) -> dict[str, str]:
    """The tags of a registered version (test metrics, training range, artifact hash, lineage)."""
    return dict(_client().get_model_version(name, version).tags)


def version_run_id(name: str, version: str) -> str:
    """The MLflow run that logged a registered version."""
    return _client().get_model_version(name, version).run_id


def newest_candidate(name: str) -> str:
    """The most recently registered version, if it is not (or no longer) in Production or Archived.

    A version staged by an earlier attempt stays the candidate, so a retried promotion evaluates the same version.
    """
    versions = _client().search_model_versions(f"name='{name}'")
    if not versions:
        raise RegistryError(f"model {name} has no registered version; run train_{name} first")
    newest = max(versions, key=lambda v: int(v.version))
    if newest.current_stage in ("Production", "Archived"):
        raise RegistryError(f"the newest version of {name}, v{newest.version}, is already {newest.current_stage}: "
                            f"nothing awaits promotion (pass a version to promote another one)")
    return str(newest.version)


def mart_columns(settings: Settings, table: str) -> dict[str, str]:
    """Column name -> data type of a warehouse table, as it is now."""
    schema, name = table.split(".")
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        return dict(conn.execute("select column_name, data_type from information_schema.columns"
                                 " where table_schema = %s and table_name = %s", (schema, name)).fetchall())


@contextlib.contextmanager
def promotion_lock(settings: Settings, model: str):
    """Yield True while this process holds the model's promotion lock (a PostgreSQL advisory lock), else False."""
    with psycopg.connect(settings.dsn(settings.warehouse_db), autocommit=True) as conn:
        key = f"mlscale.promotion.{model}"
        held = conn.execute("select pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]
        try:
            yield held
        finally:
            if held:
                conn.execute("select pg_advisory_unlock(hashtext(%s))", (key,))


def evaluate(settings: Settings, spec: ModelSpec, version: str | None = None,
             airflow_run_id: str | None = None) -> Decision:
    """Run the Staging gate (stage the version if it passes) and the Production gate; audit a rejection.

    Returns a `pending` decision when both gates pass: `switch` makes it Production.
    """
    client = _client()
    version = version or newest_candidate(spec.name)
    production = alias_version(spec.name, "production")
    decision = Decision(spec.name, version, "rejected", client.get_model_version(spec.name, version).current_stage,
                        "", production)
    split = training.time_split(features.labelled(settings, spec), spec.split.gap_days)
    holdout, y = split.test, split.test[spec.label].to_numpy()
    try:
        model, fetched = artifacts.load_verified(spec.name, version)
    except artifacts.TamperedArtifact as exc:
        decision.gates["staging"] = {"passed": False, "checks": {"artifact_sha256": {"passed": False, "why": str(exc)}}}
        decision.reason = f"staging gate: {exc}"
        return _finish(settings, client, decision, airflow_run_id)
    scores = selection.predict(spec, model, holdout[spec.feature_names])
    decision.candidate_metrics = evaluation.evaluate(spec, y, scores)
    staging = gates.staging(spec, model, fetched, holdout, scores, decision.candidate_metrics,
                            mart_columns(settings, spec.table))
    decision.gates["staging"] = staging.as_dict()
    if not staging.passed:
        decision.reason = f"staging gate: {staging.reason}"
        return _finish(settings, client, decision, airflow_run_id)
    _transition(client, spec.name, version, "Staging")
    client.set_registered_model_alias(spec.name, "staging", version)
    decision.stage = "Staging"
    log.info("%s v%s passed the staging gate (%s) and is in Staging", spec.name, version,
             ", ".join(f"{k}: {c['why']}" for k, c in staging.checks.items()))

    if production and production != version:
        try:
            reference, _ = artifacts.load_verified(spec.name, production)
        except artifacts.TamperedArtifact as exc:
            raise RegistryError(f"Production itself fails its artifact check, so nothing can be compared with it: "
                                f"{exc}") from exc
        reference_name, check = f"production v{production}", gates.production
        ref_scores = selection.predict(spec, reference, holdout[spec.feature_names])
    else:  # the strongest of the spec's baselines, fitted on the training rows, on this holdout
        strongest = measure_all(spec, split.train, holdout)[0]
        reference_name, check = f"the strongest baseline ({strongest.model.describe()})", gates.first_version
        ref_scores = strongest.scores
    decision.production_metrics = evaluation.evaluate(spec, y, ref_scores)
    prod_gate = check(spec, holdout, scores, ref_scores, reference_name)
    decision.gates["production"] = {**prod_gate.as_dict(), "against": reference_name,
                                    "holdout_as_of": str(split.test_as_of.date()), "holdout_rows": len(holdout)}
    if not prod_gate.passed:
        decision.reason = f"production gate against {reference_name}: {prod_gate.reason}"
        return _finish(settings, client, decision, airflow_run_id)
    decision.decision = "pending"
    decision.reason = f"passed both gates against {reference_name}: " + "; ".join(
        c["why"] for c in prod_gate.checks.values())
    log.info("%s v%s ready for Production: %s", spec.name, version, decision.reason)
    return decision


def switch(settings: Settings, spec: ModelSpec, decision: Decision, airflow_run_id: str | None = None,
           decided_by: str = "auto") -> Decision:
    """Make an evaluated version Production, if nothing changed since it was evaluated; else abort, change nothing."""
    if decision.decision != "pending":
        raise RegistryError(f"{spec.name} v{decision.version} is {decision.decision}, not pending: nothing to switch")
    client = _client()
    decision.decided_by = decided_by
    with promotion_lock(settings, spec.name) as held:
        if not held:
            return _abort(settings, client, decision, airflow_run_id,
                          f"another promotion or rollback of {spec.name} holds the lock; nothing changed")
        current = alias_version(spec.name, "production")
        stage = client.get_model_version(spec.name, decision.version).current_stage
        if current == decision.version and stage == "Production":  # a retry after the switch itself went through
            decision.decision, decision.stage = "promoted", "Production"
            return _finish(settings, client, decision, airflow_run_id)
        if current != decision.previous_production:
            return _abort(settings, client, decision, airflow_run_id,
                          f"Production is now v{current}, but v{decision.version} was evaluated against "
                          f"v{decision.previous_production}; nothing changed (promote it again to re-evaluate)")
        if stage != "Staging":
            return _abort(settings, client, decision, airflow_run_id,
                          f"v{decision.version} is in {stage}, no longer Staging; nothing changed")
        _transition(client, spec.name, decision.version, "Production", archive_existing=True)
        client.set_registered_model_alias(spec.name, "production", decision.version)
        if alias_version(spec.name, "staging") == decision.version:  # another challenger keeps its alias
            client.delete_registered_model_alias(spec.name, "staging")
        if current:
            client.set_registered_model_alias(spec.name, "previous_production", current)
        decision.decision, decision.stage = "promoted", "Production"
        if decided_by != "auto":
            decision.reason += f"; approved by {decided_by}"
        return _finish(settings, client, decision, airflow_run_id)


def reject(settings: Settings, spec: ModelSpec, decision: Decision, decided_by: str,
           airflow_run_id: str | None = None) -> Decision:
    """Record that a person rejected an evaluated version; it stays in Staging, Production is untouched."""
    decision.decision, decision.decided_by = "rejected", decided_by
    decision.reason = f"rejected by {decided_by} at the approval step (gates had passed: {decision.reason})"
    return _finish(settings, _client(), decision, airflow_run_id)


def promote(settings: Settings, spec: ModelSpec, version: str | None = None, airflow_run_id: str | None = None,
            approved_by: str | None = None) -> Decision:
    """evaluate, then switch when both gates pass. A spec with `approval: required` needs `approved_by`."""
    if spec.promotion.approval == "required" and not approved_by:
        raise RegistryError(f"{spec.name} requires approval: run promote_{spec.name} in Airflow (Required Actions), "
                            "or name the approver (mlscale promote --approved-by NAME)")
    decision = evaluate(settings, spec, version, airflow_run_id)
    if decision.decision != "pending":
        return decision
    return switch(settings, spec, decision, airflow_run_id, decided_by=approved_by or "auto")


def rollback(settings: Settings, spec: ModelSpec, target: str | None = None, airflow_run_id: str | None = None,
             decided_by: str = "manual") -> Decision:
    """Make `target` (default: previous_production) Production again; archive the current version."""
    client = _client()
    with promotion_lock(settings, spec.name) as held:
        if not held:
            raise RegistryError(f"another promotion or rollback of {spec.name} holds the lock; try again")
        current = alias_version(spec.name, "production")
        target = target or alias_version(spec.name, "previous_production")
        if current is None:
            raise RegistryError(f"{spec.name} has no Production version to roll back")
        if target is None:
            raise RegistryError(f"{spec.name} has no previous_production version; pass the version to roll back to")
        if target == current:
            raise RegistryError(f"{spec.name} v{target} is already Production")
        artifacts.fetch_verified(spec.name, target)  # never put a tampered artifact back in service
        _transition(client, spec.name, target, "Production", archive_existing=True)
        client.set_registered_model_alias(spec.name, "production", target)
        if alias_version(spec.name, "previous_production") == target:
            client.delete_registered_model_alias(spec.name, "previous_production")
        client.set_model_version_tag(spec.name, current, "rolled_back", f"replaced by v{target}")
        decision = Decision(spec.name, target, "rolled_back", "Production",
                            f"rolled back from v{current} to v{target} by {decided_by}", current, decided_by=decided_by)
        return _finish(settings, client, decision, airflow_run_id)


def _abort(settings: Settings, client, decision: Decision, airflow_run_id: str | None, reason: str) -> Decision:
    decision.decision, decision.reason = "aborted", reason
    return _finish(settings, client, decision, airflow_run_id)


def _finish(settings: Settings, client, decision: Decision, airflow_run_id: str | None) -> Decision:
    """Audit the decision in ops.model_promotions and as a tag on the version."""
    (log.info if decision.decision in ("promoted", "rolled_back") else log.warning)(
        "%s v%s %s: %s", decision.model, decision.version, decision.decision.upper(), decision.reason)
    client.set_model_version_tag(decision.model, decision.version, "promotion", f"{decision.decision}: {decision.reason}"[:5000])
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        conn.execute(AUDIT_DDL)
        conn.execute(
            "insert into ops.model_promotions (model, from_version, to_version, stage, decision, candidate_metrics,"
            " production_metrics, gates, reason, airflow_run_id, decided_by)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (decision.model, decision.previous_production, decision.version, decision.stage, decision.decision,
             json.dumps(decision.candidate_metrics), json.dumps(decision.production_metrics),
             json.dumps(decision.gates), decision.reason, airflow_run_id, decision.decided_by),
        )
    return decision


def model_versions(name: str) -> list:
    """Every version of `name` (MLflow ModelVersion, aliases included), newest first."""
    client = _client()
    found = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    return [client.get_model_version(name, v.version) for v in found]  # search results omit aliases


def registry_state(name: str) -> list[dict]:
    """Every version of `name` with its stage and aliases, newest first."""
    return [{"version": str(v.version), "stage": v.current_stage, "aliases": sorted(v.aliases or [])}
            for v in model_versions(name)]


def decision_dict(decision: Decision) -> dict:
    """A JSON-friendly copy of a decision (for XCom and logs)."""
    return asdict(decision)


def decision_from_dict(data: dict) -> Decision:
    return Decision(**data)
