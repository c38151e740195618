"""
DAG factory over the model specs in `include/models/*.yml`: each spec gets its own
`monitor_<model>`, `train_<model>`, `promote_<model>`, `rollback_<model>` and `score_<model>` DAGs.
Adding a spec file adds its DAGs.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, TriggerRule, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlscale.airflow.approval import REASON, REQUEST_KEY, RecordedApprovalOperator, answer
from mlscale.airflow.assets import (CUSTOMER_FEATURES, PREDICTIONS, candidate_asset, dag_args, failing_on,
                                   production_asset, retrain_asset)
from mlscale.specs import ModelSpec, load_specs

APPROVAL_TIMEOUT = timedelta(days=7)  # no answer in a week: the approve task fails, nothing changes
TRAIN_DOC = """
### train_{name} — train `{name}` and register a candidate version

**Owner:** Data Scientist · **Triggered by:** the `{name}_retrain` asset, which `monitor_{name}` updates
when it finds drift, a drop in realised performance or a model past its age (the reason is in the
event and becomes the run's `mlscale.retrain_reason` tag), or by hand (a run by hand right after such a
request, before a version answers it, still names the request; otherwise the tag says "manual run").

{description}

Reads matured rows of `{table}` (label `{label}`), splits by as-of date (test = the latest matured
as-of date; training only on as-of dates at least {gap} days earlier), tries up to {budget} parameter
combinations of each of {candidates} (one nested MLflow run each; no new one after {minutes}), picks the
best on the last {valid} training as-of dates by `{metric}` (classification: among those whose validation
log loss is within {excess} of the best), refits it, calibrates its probabilities on those held-out dates
(classification: {calibration}, kept only where it lowers their log loss) and tests it against the
strongest of its baselines ({baselines}).

Logged to the MLflow experiment `{name}`: params, test metrics of model and each baseline, per-segment
metrics, the campaign profit (economics: dbt seed `model_economics`), ROC/PR/reliability or residual
plots, permutation importance, `evaluation/search.json` (what was tried, excluded, not tried),
`model_card.md`, signature, input example, the training and test datasets (content digest) and tags for
the dbt invocation, git commit and this Airflow run.

**Produces:** a registered version and the `{name}_candidate` asset (extra: model, version, run_id),
which triggers `promote_{name}`. A model that does not beat the strongest baseline is logged but not registered:
the task is **skipped** with the reason in its log, and nothing is promoted.
"""

PROMOTE_DOC = """
### promote_{name} — Staging and Production gates for `{name}`

**Owner:** Production Engineer · **Triggered by:** the `{name}_candidate` asset, or by hand
(param `version`; empty = the newest registered version). **Approval:** `{approval}`.

1. **evaluate** — the candidate is loaded from the registry (its artifact sha256 checked against the
   one recorded at registration) and re-evaluated now on the latest matured as-of date.
   *Staging gate:* floors {floors}; the model's signature matches the current `{table}`; it scores the
   holdout (smoke test); size ≤ {max_mb} MB; {latency_rows} rows scored in ≤ {max_ms} ms → stage
   `Staging`, alias `staging` (the version staged before it is archived: one challenger at a time).
   *Production gate:* current Production is scored on the same rows; the candidate must beat it on
   `{metric}` by ≥ {margin}, the {confidence:.0%} paired-bootstrap interval of the difference must lie above 0, and no region or tenure segment may lose more than {tolerance}
   (with no Production yet, it must beat the baseline on those rows). A rejection ends the run here (tasks skipped), with
   the reason in the log and in `ops.model_promotions`.
2. **approve** (only with `approval: required`) — waits in the UI's *Required Actions* for a person to
   Approve or Reject, with a reason (the triggerer must run). The request shows both versions, each metric
   with its direction and gate threshold, the holdout, the training windows, what changed, the campaign
   profit and links (mlscale.production.review); the ML models page shows it as pending.
   Reject → **record_rejection** audits it; the version stays the Staging challenger (shadow-scored),
   Production is untouched.
3. **switch** — under a per-model lock, checks that Production is still the version evaluated against
   (compare-and-set; otherwise the run fails as *aborted* and changes nothing), then moves the
   candidate to `Production` (alias `production`), archives the old version and aliases it
   `previous_production`.

Every decision (promoted, rejected, aborted) is a row in `ops.model_promotions` and a `promotion`
tag on the version. `rollback_{name}` undoes a promotion.
"""

ROLLBACK_DOC = """
### rollback_{name} — put an earlier version of `{name}` back into Production

**Owner:** Production Engineer · **Triggered:** by hand only, with a `reason` (required; recorded); param
`version` (empty = the version aliased `previous_production`).

1. **plan** — finds the version serving and the one going back, and checks, before anything changes, that
   the target served in Production before (per `ops.model_promotions`; one the gates or a person rejected
   never can, unless `force_reason` says why) and that its artifact hashes to what was recorded at
   registration. A failed check fails the run here, with the reason.
2. **confirm** — waits in the UI's *Required Actions*: both versions side by side (data, test metrics, when
   each served), the checks, the reason given, links; Approve or Reject (the triggerer must run).
3. **rollback** — under the same per-model lock as promotions, if Production is still the planned version:
   moves the `production` alias to the target (what scoring serves), then its stage to `Production`,
   archives the current version (tagged `rolled_back`), and records a `rolled_back` row in
   `ops.model_promotions` with the checks and the reason. A retry after a failure midway finishes the
   steps left.
"""


SCORE_DOC = """
### score_{name} — daily batch scoring with `models:/{name}@production`

**Owner:** Production Engineer · **Schedule:** daily, as soon as `promote_{name}` or `rollback_{name}`
puts another version into Production (asset `{name}_production`), and by hand (param `as_of_date`;
empty = latest).

Loads the Production version after checking its artifact sha256 against the one recorded at
registration (a mismatch fails the run: nothing is scored), reads every active customer of the
as-of date in chunks, and replaces that day's rows of `ml.predictions` (model, version, as-of date,
customer, score, decile) in one transaction: a rerun never duplicates. When a version is aliased
`staging` (a challenger), it scores the same customers into `ml.shadow_predictions`, so champion
and challenger can be compared once the labels mature.
"""


MONITOR_DOC = """
### monitor_{name} — is Production `{name}` still fit for today's data?

**Owner:** Production Engineer · **Triggered by:** the `ml.customer_features` asset (each finished
`warehouse_etl`, so daily with daily deliveries), and by hand.

**monitor** checks the Production version on the newest as-of date of `{table}`:
- *feature drift*: population stability index (PSI) of each feature against the customers the version
  was trained to score ({bins} quantile bins of that reference, logged with the model); breach above {feature_psi};
- *prediction drift*: PSI of today's scores against the reference scores; breach above {prediction_psi};
- *realised performance*: `{metric}` of the newest predictions in `ml.predictions` whose labels have now
  matured, against the version's test `{metric}`; breach when it is worse by more than {max_drop};
- *age* (scheduled retraining): breach when the version's data is {max_age} or more days behind.

Every check is a row in `ops.model_monitoring` and a metric in the MLflow experiment `{name}_monitoring`.
**request_retrain** then updates the `{name}_retrain` asset with the reason, which triggers `train_{name}`
(and so a new staged promotion, where a worse candidate leaves Production untouched). It is skipped
when nothing breached, or when a retrain was requested less than {cooldown} days ago.
**record_decision** records the decision only once the request is out (or none was asked for): the
cooldown counts from recorded requests, so a try that failed before its request (MLflow down while
logging) never holds back its retry.
"""


def _monitor_dag(spec: ModelSpec):
    retrain = retrain_asset(spec.name)
    m = spec.monitoring

    @dag(**dag_args(
        "production_engineer", retries=1,
        dag_id=f"monitor_{spec.name}",
        schedule=[CUSTOMER_FEATURES],
        tags=["production-engineer", "monitoring", spec.name],
        doc_md=MONITOR_DOC.format(
            name=spec.name, table=spec.table, bins=m.bins, feature_psi=m.feature_psi, prediction_psi=m.prediction_psi,
            metric=spec.primary_metric, max_drop=m.max_metric_drop, cooldown=m.min_days_between_retrains,
            max_age=m.max_model_age_days or "(never: no scheduled retraining)",
        ),
    ))
    def monitor_dag():
        @task
        def monitor() -> dict:
            """Drift, realised performance and age of the Production version; recorded and logged."""
            from mlscale.config import settings
            from mlscale.production.monitoring import monitor
            from mlscale.specs import load_specs

            return monitor(settings(), load_specs()[spec.name], get_current_context()["run_id"]).to_dict()

        @task(outlets=[retrain])
        def request_retrain(report: dict) -> str:
            """Update the retrain asset (reason in the event) when monitoring asks for it; else skip."""
            if not report["retrain"]:
                raise AirflowSkipException(f"no retrain: {report['reason']}")
            get_current_context()["outlet_events"][retrain].extra = {
                "model": spec.name, "production_version": report["version"], "as_of_date": report["as_of_date"],
                "reason": report["reason"]}
            return report["reason"]

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def record_decision(report: dict) -> None:
            """The decision, once acted on (the request is out, or none was asked for): the cooldown counts from it."""
            from mlscale.config import settings
            from mlscale.production.monitoring import record_decision

            record_decision(settings(), report, get_current_context()["run_id"])

        report = monitor()
        request_retrain(report) >> record_decision(report)

    return monitor_dag()


def _train_dag(spec: ModelSpec):
    candidate = candidate_asset(spec.name)
    retrain = retrain_asset(spec.name)

    @dag(**dag_args(
        spec.owner, retries=1,
        dag_id=f"train_{spec.name}",
        schedule=[retrain],
        tags=["data-scientist", "training", spec.name],
        doc_md=TRAIN_DOC.format(
            name=spec.name, description=spec.description, table=spec.table, label=spec.label,
            gap=spec.split.gap_days, candidates=", ".join(c.name for c in spec.candidates),
            valid=spec.split.validation_as_of_dates, metric=spec.primary_metric, budget=spec.search.budget,
            minutes=f"{spec.search.max_minutes:g} minutes" if spec.search.max_minutes else "no time limit",
            excess=spec.search.max_log_loss_excess, calibration=", ".join(spec.calibration.methods) or "none",
            baselines="; ".join(f"training label mean per bin of {b.feature}" if b.kind == "binned_mean"
                                else f"{b.kind}, {b.horizon_days} days" for b in spec.baselines),
        ),
    ))
    def train_dag():
        @task(inlets=[retrain], outlets=[candidate])
        def train() -> dict:
            """Train, log to MLflow, register a version; announce it on the candidate asset."""
            from mlscale.config import settings
            from mlscale.specs import load_specs
            from mlscale.modeling.training import retrain_reason, train

            context = get_current_context()
            # the event that triggered this run, else the retrain asset's newest event (a run by hand)
            requests = context["triggering_asset_events"].get(retrain) or context["inlet_events"][retrain]
            reason = retrain_reason(settings(), spec.name, requests[-1] if requests else None, context["run_id"])
            result = train(settings(), load_specs()[spec.name],
                           tags={"airflow.dag_id": context["dag"].dag_id, "airflow.run_id": context["run_id"],
                                 "mlscale.retrain_reason": reason})
            if not result["registered"]:
                # Skipped, not failed: training worked, the model is just not worth promoting. No asset event.
                raise AirflowSkipException(f"not registered: does not beat the baseline: {result['reason']}")
            context["outlet_events"][candidate].extra = {
                "model": result["model"], "version": result["version"], "run_id": result["run_id"]}
            return result

        train()

    return train_dag()


def _promote_dag(spec: ModelSpec):
    # One run at a time (dag_args): one promotion per model at a time; the switch also takes a lock.
    @dag(**dag_args(
        "production_engineer", retries=1,
        dag_id=f"promote_{spec.name}",
        schedule=[candidate_asset(spec.name)],
        params={"version": Param(None, type=["null", "string"], description="Registered version to promote; empty = the newest one")},
        tags=["production-engineer", "promotion", spec.name],
        doc_md=PROMOTE_DOC.format(
            name=spec.name, approval=spec.promotion.approval, table=spec.table, metric=spec.primary_metric,
            floors=spec.promotion.staging.min_metrics, max_mb=spec.promotion.staging.max_model_mb,
            latency_rows=spec.promotion.staging.latency_rows, max_ms=spec.promotion.staging.max_batch_ms,
            margin=spec.promotion.production.min_improvement, tolerance=spec.promotion.production.segment_tolerance,
            confidence=spec.promotion.production.bootstrap.confidence,
        ),
    ))
    def promote_dag():
        @task.short_circuit
        def evaluate() -> dict | None:
            """Gates; stage the version. Returns the pending decision, or nothing (downstream skipped) on rejection."""
            from mlscale import registry
            from mlscale.production import promotion
            from mlscale.config import settings
            from mlscale.specs import load_specs

            context = get_current_context()
            with failing_on(registry.RegistryError):
                decision = promotion.evaluate(settings(), load_specs()[spec.name], context["params"].get("version"),
                                              context["run_id"])
            if decision.decision != "pending":
                return None
            if spec.promotion.approval == "required":  # what the approver reads under Required Actions
                from mlscale.airflow.models_page import page_url
                from mlscale.production.review import approval_request

                context["ti"].xcom_push(key=REQUEST_KEY, value=approval_request(
                    settings(), load_specs()[spec.name], decision, page_url()))
            return promotion.decision_dict(decision)

        @task(outlets=[production_asset(spec.name)])  # score_<model> scores the new Production version
        def switch(decision: dict) -> dict:
            """Compare-and-set under the model's lock, then move stages and aliases."""
            from mlscale.production import promotion
            from mlscale.config import settings
            from mlscale.specs import load_specs

            context = get_current_context()
            decided_by, why = answer(context["ti"]) if spec.promotion.approval == "required" else ("auto", None)
            done = promotion.switch(settings(), load_specs()[spec.name], promotion.decision_from_dict(decision),
                                    context["run_id"], decided_by, why)
            if done.decision == "aborted":
                raise AirflowFailException(f"promotion aborted: {done.reason}")
            return promotion.decision_dict(done)

        decision = evaluate()
        promoted = switch(decision)
        if spec.promotion.approval == "required":
            approve = RecordedApprovalOperator(
                task_id="approve",
                subject=f"Promote {spec.name} v{{{{ ti.xcom_pull(task_ids='evaluate')['version'] }}}} to Production?",
                body=f"{{{{ ti.xcom_pull(task_ids='evaluate', key='{REQUEST_KEY}') }}}}",
                params=REASON,
                response_timeout=APPROVAL_TIMEOUT,
                execution_timeout=APPROVAL_TIMEOUT,  # waiting for a person is not a hung task
                retries=0,  # an unanswered request fails once; a new promote run asks again
            )

            @task(trigger_rule=TriggerRule.ALL_SKIPPED)
            def record_rejection() -> dict:
                """Runs only when the approver rejected (switch skipped): audit it."""
                from mlscale.production import promotion
                from mlscale.config import settings
                from mlscale.specs import load_specs

                context = get_current_context()
                ti = context["ti"]
                done = promotion.reject(settings(), load_specs()[spec.name],
                                        promotion.decision_from_dict(ti.xcom_pull(task_ids="evaluate")),
                                        *answer(ti), context["run_id"])
                return promotion.decision_dict(done)

            decision >> approve >> promoted >> record_rejection()

    return promote_dag()


def _rollback_dag(spec: ModelSpec):
    @dag(**dag_args(
        "production_engineer", retries=1,
        dag_id=f"rollback_{spec.name}",
        schedule=None,
        params={"version": Param(None, type=["null", "string"],
                                 description="Version to put back into Production; empty = previous_production"),
                "reason": Param(type="string", minLength=3, title="Reason",
                                description="Why roll back (required): recorded with the decision in the audit"),
                "force_reason": Param(None, type=["null", "string"],
                                      description="Only to put back a version that never served in Production "
                                                  "(the gates or a person rejected it): why; audited")},
        tags=["production-engineer", "rollback", spec.name],
        doc_md=ROLLBACK_DOC.format(name=spec.name),
    ))
    def rollback_dag():
        @task
        def plan() -> dict:
            """Which version serves and which goes back, with the checks; the request the person confirms."""
            from dataclasses import asdict

            from mlscale import registry
            from mlscale.airflow.models_page import page_url
            from mlscale.config import settings
            from mlscale.modeling.artifacts import TamperedArtifact
            from mlscale.production import promotion, review
            from mlscale.specs import load_specs

            context = get_current_context()
            model = load_specs()[spec.name]
            with failing_on(registry.RegistryError, TamperedArtifact):
                planned = promotion.plan_rollback(settings(), model, context["params"].get("version"),
                                                  context["params"].get("force_reason"))
            context["ti"].xcom_push(key=REQUEST_KEY, value=review.rollback_request(
                settings(), model, planned, context["params"]["reason"], page_url()))
            return asdict(planned)

        confirm = RecordedApprovalOperator(
            task_id="confirm",
            subject=f"Roll back {spec.name} from v{{{{ ti.xcom_pull(task_ids='plan')['current'] }}}} "
                    f"to v{{{{ ti.xcom_pull(task_ids='plan')['target'] }}}}?",
            body=f"{{{{ ti.xcom_pull(task_ids='plan', key='{REQUEST_KEY}') }}}}",
            response_timeout=APPROVAL_TIMEOUT,
            execution_timeout=APPROVAL_TIMEOUT,
            retries=0,
        )

        @task(outlets=[production_asset(spec.name)])
        def rollback(planned: dict) -> dict:
            """Under the model's lock, if Production is still the planned version: move alias and stages back."""
            from mlscale import registry
            from mlscale.production import promotion
            from mlscale.config import settings
            from mlscale.specs import load_specs

            context = get_current_context()
            who, _ = answer(context["ti"], "confirm")
            with failing_on(registry.RegistryError):
                done = promotion.rollback(settings(), load_specs()[spec.name], airflow_run_id=context["run_id"],
                                          decided_by=who, why=context["params"]["reason"],
                                          plan=promotion.plan_from_dict(planned))
            return promotion.decision_dict(done)

        planned = plan()
        planned >> confirm >> rollback(planned)

    return rollback_dag()


def _score_dag(spec: ModelSpec):
    @dag(**dag_args(
        "production_engineer",
        dag_id=f"score_{spec.name}",
        # daily, and as soon as another version serves (a promotion or a rollback)
        schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("@daily", timezone="UTC"),
                                     assets=[production_asset(spec.name)]),
        params={"as_of_date": Param(None, type=["null", "string"], format="date", description="As-of date to score; empty = latest")},
        tags=["production-engineer", "scoring", spec.name],
        doc_md=SCORE_DOC.format(name=spec.name),
    ))
    def score_dag():
        @task(outlets=[PREDICTIONS])
        def score() -> dict:
            """Score the as-of date with the Production version into ml.predictions."""
            from datetime import date

            from mlscale.modeling.artifacts import TamperedArtifact
            from mlscale.config import settings
            from mlscale.registry import RegistryError
            from mlscale.production.scoring import NoProductionVersion, score
            from mlscale.specs import load_specs

            as_of = get_current_context()["params"].get("as_of_date")
            with failing_on(RegistryError, TamperedArtifact):
                try:
                    return score(settings(), load_specs()[spec.name], date.fromisoformat(as_of) if as_of else None)
                except NoProductionVersion as exc:  # a new deployment's daily run, before any promotion
                    raise AirflowSkipException(str(exc)) from None

        score()

    return score_dag()


for _spec in load_specs().values():
    for _factory in (_monitor_dag, _train_dag, _promote_dag, _rollback_dag, _score_dag):
        _dag = _factory(_spec)
        globals()[_dag.dag_id] = _dag
