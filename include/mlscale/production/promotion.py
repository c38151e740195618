"""Promotion through the MLflow registry: gates, stages and aliases, one change at a time, audit rows.

A promotion has two steps, which the promote_<model> DAG runs as separate tasks (with a person's
approval in between when the spec asks for it): `evaluate` runs the gates and stages the version;
`switch` moves it to Production under a per-model lock, after a compare-and-set check that Production
is still the version it was evaluated against. `rollback` moves Production back. Every decision is a
row in ops.model_promotions and a tag on the version (`promotion`, the newest; `promotion.<n>`, each one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field

from mlscale import ops, postgres, registry
from mlscale.modeling import artifacts, evaluation, features, judging
from mlscale.production import gates
from mlscale.modeling.baseline import measure_all
from mlscale.modeling.training import load_economics
from mlscale.data import contract
from mlscale.config import Settings
from mlscale.registry import RegistryError
from mlscale.specs import ModelSpec

log = logging.getLogger(__name__)


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


def _transition(client, name: str, version: str, stage: str, archive_existing: bool = False) -> None:
    # Stages are deprecated in MLflow 3 but still the registry's lifecycle view; aliases are set alongside.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, version, stage, archive_existing_versions=archive_existing)


def mart_columns(settings: Settings, table: str) -> dict[str, str]:
    """Column name -> data type of a warehouse table, as it is now."""
    schema, name = table.split(".")
    with postgres.warehouse(settings) as conn:
        return dict(conn.execute("select column_name, data_type from information_schema.columns"
                                 " where table_schema = %s and table_name = %s", (schema, name)).fetchall())


@contextlib.contextmanager
def promotion_lock(settings: Settings, model: str):
    """Yield True while this process holds the model's promotion lock (a PostgreSQL advisory lock), else False."""
    with postgres.warehouse(settings, autocommit=True) as conn:
        key = f"mlscale.production.promotion.{model}"
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
    client = registry.client(settings)
    version = version or registry.newest_candidate(settings, spec.name)
    production = registry.alias_version(settings, spec.name, "production")
    decision = Decision(spec.name, version, "rejected", client.get_model_version(spec.name, version).current_stage,
                        "", production)
    # the rows training judged on: its test date, and its training rows (the same sample) for the baselines
    split = judging.time_split(features.labelled(settings, spec, features.split_window(settings, spec)),
                               spec.split.gap_days)
    holdout, y = split.test, split.test[spec.label].to_numpy()
    try:
        model, fetched = artifacts.load_verified(settings, spec.name, version)
    except artifacts.TamperedArtifact as exc:
        decision.gates["staging"] = {"passed": False, "checks": {"artifact_sha256": {"passed": False, "why": str(exc)}}}
        decision.reason = f"staging gate: {exc}"
        return _finish(settings, client, decision, airflow_run_id)
    scores = judging.predict(spec, model, holdout[spec.feature_names])
    decision.candidate_metrics = evaluation.evaluate(spec, y, scores)
    staging = gates.staging(spec, model, fetched, holdout, scores, decision.candidate_metrics,
                            mart_columns(settings, spec.table))
    decision.gates["staging"] = staging.as_dict()
    if not staging.passed:
        decision.reason = f"staging gate: {staging.reason}"
        return _finish(settings, client, decision, airflow_run_id)
    # One challenger: the version aliased `staging` is the only one in stage Staging (an earlier one is archived),
    # so the registry's stages, the alias that shadow scoring follows and the ML models page say the same.
    _transition(client, spec.name, version, "Staging", archive_existing=True)
    client.set_registered_model_alias(spec.name, "staging", version)
    decision.stage = "Staging"
    log.info("%s v%s passed the staging gate (%s) and is in Staging", spec.name, version,
             ", ".join(f"{k}: {c['why']}" for k, c in staging.checks.items()))

    if production and production != version:
        try:
            reference, _ = artifacts.load_verified(settings, spec.name, production)
        except artifacts.TamperedArtifact as exc:
            raise RegistryError(f"Production itself fails its artifact check, so nothing can be compared with it: "
                                f"{exc}") from exc
        reference_name, check = f"production v{production}", gates.production
        ref_scores = judging.predict(spec, reference, holdout[spec.feature_names])
    else:  # the strongest of the spec's baselines, fitted on the training rows, on this holdout
        strongest = measure_all(spec, split.train, holdout)[0]
        reference_name, check = f"the strongest baseline ({strongest.model.describe()})", gates.first_version
        ref_scores = strongest.scores
    decision.production_metrics = evaluation.evaluate(spec, y, ref_scores)
    prod_gate = check(spec, holdout, scores, ref_scores, reference_name)
    economics = load_economics(settings, spec.name)  # the campaign each side would run on the holdout, for people
    decision.gates["production"] = {**prod_gate.as_dict(), "against": reference_name,
                                    "holdout_as_of": str(split.test_as_of.date()), "holdout_rows": len(holdout),
                                    "campaign": {"currency": contract.currency(),
                                                 "candidate": evaluation.campaign(spec, economics, holdout, y, scores),
                                                 "reference": evaluation.campaign(spec, economics, holdout, y,
                                                                                  ref_scores)}}
    if not prod_gate.passed:
        decision.reason = f"production gate against {reference_name}: {prod_gate.reason}"
        return _finish(settings, client, decision, airflow_run_id)
    decision.decision = "pending"
    decision.reason = f"passed both gates against {reference_name}: " + "; ".join(
        c["why"] for c in prod_gate.checks.values())
    log.info("%s v%s ready for Production: %s", spec.name, version, decision.reason)
    return decision


def switch(settings: Settings, spec: ModelSpec, decision: Decision, airflow_run_id: str | None = None,
           decided_by: str = "auto", why: str | None = None) -> Decision:
    """Make an evaluated version Production, if nothing changed since it was evaluated; else abort, change nothing.

    The `production` alias (what scoring serves) is the truth and moves first; stage and the other aliases follow.
    A retry after a failure in between finds the alias moved and finishes the remaining steps. A person who
    approved it is `decided_by`, with their reason `why`."""
    if decision.decision != "pending":
        raise RegistryError(f"{spec.name} v{decision.version} is {decision.decision}, not pending: nothing to switch")
    client = registry.client(settings)
    decision.decided_by = decided_by
    with promotion_lock(settings, spec.name) as held:
        if not held:
            return _abort(settings, client, decision, airflow_run_id,
                          f"another promotion or rollback of {spec.name} holds the lock; nothing changed")
        current = registry.alias_version(settings, spec.name, "production")
        if current != decision.version:
            if current != decision.previous_production:
                return _abort(settings, client, decision, airflow_run_id,
                              f"Production is now v{current}, but v{decision.version} was evaluated against "
                              f"v{decision.previous_production}; nothing changed (promote it again to re-evaluate)")
            stage = client.get_model_version(spec.name, decision.version).current_stage
            if stage != "Staging":
                return _abort(settings, client, decision, airflow_run_id,
                              f"v{decision.version} is in {stage}, no longer Staging; nothing changed")
            client.set_registered_model_alias(spec.name, "production", decision.version)
        else:
            log.info("%s v%s already serves (an earlier try moved the production alias): finishing the switch",
                     spec.name, decision.version)
        _settle(settings, client, spec.name, decision.version, decision.previous_production)
        decision.decision, decision.stage = "promoted", "Production"
        if decided_by != "auto":
            decision.reason += f"; approved by {decided_by}" + (f": {why}" if why else "")
        return _finish(settings, client, decision, airflow_run_id)


def _settle(settings: Settings, client, name: str, version: str, replaced: str | None) -> None:
    """The steps after the production alias moved to `version`, each a no-op when already done: alias
    `previous_production` on the version it `replaced` (a promotion; a rollback passes None), the `staging` and
    `previous_production` aliases dropped where they still name `version`, stage Production for `version` and
    Archived for the others in Production."""
    if replaced:
        client.set_registered_model_alias(name, "previous_production", replaced)
    for alias in ("staging", "previous_production"):  # another challenger keeps its alias
        if registry.alias_version(settings, name, alias) == version:
            client.delete_registered_model_alias(name, alias)
    if client.get_model_version(name, version).current_stage != "Production":
        _transition(client, name, version, "Production", archive_existing=True)


def reject(settings: Settings, spec: ModelSpec, decision: Decision, decided_by: str, why: str,
           airflow_run_id: str | None = None) -> Decision:
    """Record that a person rejected an evaluated version, and why; it stays the Staging challenger, Production
    is untouched."""
    decision.decision, decision.decided_by = "rejected", decided_by
    decision.reason = f"rejected by {decided_by} at the approval step: {why} (gates had passed: {decision.reason})"
    return _finish(settings, registry.client(settings), decision, airflow_run_id)


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


def _other_in_production(client, name: str, version: str) -> str | None:
    """A version other than `version` still in stage Production (left there by a switch that failed midway)."""
    return next((str(v.version) for v in client.search_model_versions(f"name='{name}'")
                 if v.current_stage == "Production" and str(v.version) != version), None)


def _settled_in_production(client, name: str, version: str) -> bool:
    """`version` is in stage Production and no other version is: nothing of a switch or rollback to it is left."""
    return _other_in_production(client, name, version) is None and \
        client.get_model_version(name, version).current_stage == "Production"


def served(settings: Settings, model: str) -> set[str]:
    """The versions of `model` that have served in Production (promoted or rolled back to, in ops.model_promotions)."""
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "model_promotions")
        return {r[0] for r in conn.execute("select distinct to_version from ops.model_promotions where model = %s"
                                           " and decision in ('promoted', 'rolled_back')", (model,))}


@dataclass
class RollbackPlan:
    model: str
    current: str  # the version serving now, which the rollback replaces
    target: str  # the version it puts back
    checks: dict  # check name -> {"passed", "why", ...}: what was verified before anything changes
    force: str = ""  # why a version that never served may go back ("" when it did serve)


def plan_rollback(settings: Settings, spec: ModelSpec, target: str | None = None,
                  force: str | None = None) -> RollbackPlan:
    """What a rollback would do, checked before anything changes: the version serving now and the one going back
    (default: previous_production). Only a version that served in Production before can go back (a rollback must
    not put in service what the gates or a person rejected), unless `force` gives the reason to, which is
    audited; its artifact must hash to what was recorded at registration. RegistryError or TamperedArtifact
    otherwise."""
    client = registry.client(settings)
    current = registry.alias_version(settings, spec.name, "production")
    target = target or registry.alias_version(settings, spec.name, "previous_production")
    if current is None:
        raise RegistryError(f"{spec.name} has no Production version to roll back")
    if target is None:
        raise RegistryError(f"{spec.name} has no previous_production version; pass the version to roll back to")
    if target == current and _settled_in_production(client, spec.name, target):
        raise RegistryError(f"{spec.name} v{target} is already Production")
    force = (force or "").strip()
    if target not in served(settings, spec.name) and not force:
        raise RegistryError(
            f"{spec.name} v{target} never served in Production (ops.model_promotions): no gate or person "
            "ever let it serve. Roll back to a version that did, or force it with a reason, which is "
            "audited (rollback_<model> param force_reason; mlscale rollback --force REASON)")
    fetched = artifacts.fetch_verified(settings, spec.name, target)  # never put a tampered artifact back in service
    checks = {
        "served_before": {"passed": True, "why": f"v{target} served in Production before (ops.model_promotions)"
                          if not force else f"v{target} never served in Production; forced: {force}"},
        "artifact_sha256": {"passed": True, "sha256": fetched.sha256,
                            "why": "matches the hash recorded at registration"},
    }
    return RollbackPlan(spec.name, current, target, checks, force)


def rollback(settings: Settings, spec: ModelSpec, target: str | None = None, airflow_run_id: str | None = None,
             decided_by: str = "manual", force: str | None = None, why: str | None = None,
             plan: RollbackPlan | None = None) -> Decision:
    """Make `target` (default: previous_production) Production again, archive the current version, audit it with
    the checks of `plan_rollback` and the reason `why` (required: a rollback is a person's decision).

    With a `plan` made earlier (the rollback_<model> DAG shows it to a person first), Production must still be
    the version the plan replaces, else nothing changes. Like `switch`, the production alias moves first and
    a retry finishes what a failed try left."""
    why = (why or "").strip()
    if not why:
        raise RegistryError(f"say why {spec.name} is rolled back (rollback_<model> param reason; mlscale rollback "
                            "--reason TEXT): it is recorded with the decision")
    client = registry.client(settings)
    with promotion_lock(settings, spec.name) as held:
        if not held:
            raise RegistryError(f"another promotion or rollback of {spec.name} holds the lock; try again")
        current = registry.alias_version(settings, spec.name, "production")
        resuming = plan is not None and current == plan.target != plan.current  # an earlier try moved the alias
        if plan is None:
            plan = plan_rollback(settings, spec, target, force)
        elif current != plan.current and not resuming:
            raise RegistryError(f"Production is now v{current}, not v{plan.current} as when this rollback was "
                                f"planned; nothing changed (plan it again)")
        elif resuming and _settled_in_production(client, spec.name, plan.target):
            raise RegistryError(f"{spec.name} v{plan.target} is already Production: this rollback was carried out")
        target = plan.target
        if current == target:
            replaced = _other_in_production(client, spec.name, target) or (
                plan.current if plan.current != target else None)
            log.info("%s v%s already serves (an earlier try moved the production alias): finishing the rollback",
                     spec.name, target)
        else:
            client.set_registered_model_alias(spec.name, "production", target)
            replaced = current
        _settle(settings, client, spec.name, target, None)
        if replaced:
            client.set_model_version_tag(spec.name, replaced, "rolled_back", f"replaced by v{target}")
        reason = f"rolled back from v{replaced or '?'} to v{target} by {decided_by}: {why}"
        if plan.force:
            reason += f"; forced, though it never served in Production: {plan.force}"
        decision = Decision(spec.name, target, "rolled_back", "Production", reason, replaced,
                            gates={"rollback": {"passed": True, "checks": plan.checks}}, decided_by=decided_by)
        return _finish(settings, client, decision, airflow_run_id)


def _abort(settings: Settings, client, decision: Decision, airflow_run_id: str | None, reason: str) -> Decision:
    decision.decision, decision.reason = "aborted", reason
    return _finish(settings, client, decision, airflow_run_id)


def _finish(settings: Settings, client, decision: Decision, airflow_run_id: str | None) -> Decision:
    """Audit the decision in ops.model_promotions and as a tag on the version."""
    (log.info if decision.decision in ("promoted", "rolled_back") else log.warning)(
        "%s v%s %s: %s", decision.model, decision.version, decision.decision.upper(), decision.reason)
    # `promotion` is the newest decision about the version; `promotion.<n>` keeps each one, oldest first.
    tag = f"{decision.decision}: {decision.reason}"[:5000]
    earlier = [k for k in client.get_model_version(decision.model, decision.version).tags if k.startswith("promotion.")]
    client.set_model_version_tag(decision.model, decision.version, f"promotion.{len(earlier) + 1}", tag)
    client.set_model_version_tag(decision.model, decision.version, "promotion", tag)
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "model_promotions")
        conn.execute(
            "insert into ops.model_promotions (model, from_version, to_version, stage, decision, candidate_metrics,"
            " production_metrics, gates, reason, airflow_run_id, decided_by)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (decision.model, decision.previous_production, decision.version, decision.stage, decision.decision,
             json.dumps(decision.candidate_metrics), json.dumps(decision.production_metrics),
             json.dumps(decision.gates), decision.reason, airflow_run_id, decision.decided_by),
        )
    return decision


def decision_dict(decision: Decision) -> dict:
    """A JSON-friendly copy of a decision (for XCom and logs)."""
    return asdict(decision)


def decision_from_dict(data: dict) -> Decision:
    return Decision(**data)


def plan_from_dict(data: dict) -> RollbackPlan:
    return RollbackPlan(**data)
