"""Is the Production model still fit for today's data? Drift, realised performance, and when to retrain.

Training logs a reference profile of its data (quantile bins of each feature and of the scores) with
the model. `monitor` compares the newest as-of date of the feature table with it (population stability
index per feature and for the scores), measures the realised metric of the newest predictions whose
labels have matured, checks the model's age, and decides whether to ask for a retrain. Every check
is a row in `ops.model_monitoring` and a metric of an MLflow run in the `<model>_monitoring` experiment.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from mlscale import ops, postgres, registry, tracking
from mlscale.modeling import artifacts, evaluation, features, judging, training
from mlscale.production import outcomes
from mlscale.modeling.drift import PROFILE_PATH, categorical_psi, numeric_psi
from mlscale.config import Settings
from mlscale.specs import ModelSpec, improvement

log = logging.getLogger(__name__)


# --- the checks ---------------------------------------------------------------------------------

@dataclass
class Check:
    check_name: str  # feature_psi | prediction_psi | realised_<metric> | model_age | reference
    subject: str  # the feature, "scores", the version judged, ...
    value: float | None
    threshold: float | None
    breach: bool
    detail: str


@dataclass
class Report:
    model: str
    version: str | None  # Production when checked
    as_of_date: str
    checks: list[Check] = field(default_factory=list)
    retrain: bool = False
    reason: str = ""

    @property
    def breaches(self) -> list[Check]:
        return [c for c in self.checks if c.breach]

    def to_dict(self) -> dict:
        return asdict(self)


def drift_checks(spec: ModelSpec, reference: dict, current: pd.DataFrame, scores: np.ndarray) -> list[Check]:
    """PSI of every feature the version was profiled on (its own inputs, whatever the spec says today) and of the scores."""
    limit = spec.monitoring.feature_psi
    checks = []
    for kind, psi_of in (("numeric", numeric_psi), ("categorical", categorical_psi)):
        for column, ref in reference[kind].items():
            value = psi_of(ref, current[column])
            checks.append(Check("feature_psi", column, value, limit, value > limit, f"PSI of {column} {value:.3f}"))
    value = numeric_psi(reference["scores"], pd.Series(scores))
    limit = spec.monitoring.prediction_psi
    checks.append(Check("prediction_psi", "scores", value, limit, value > limit, f"PSI of the scores {value:.3f}"))
    return checks


def realised_check(settings: Settings, spec: ModelSpec, production: str) -> Check | None:
    """The primary metric of the newest predictions whose labels have matured, against the version's test metric.

    Only predictions of the current Production version can ask for a retrain; older versions' are reported.
    """
    metric = spec.primary_metric
    frame = outcomes.matured(settings, spec, newest=True)
    if frame.empty:
        return None
    as_of, version = frame["as_of_date"].iloc[0], str(frame["model_version"].iloc[0])
    realised = evaluation.metric(metric, frame["outcome"], frame["score"])
    expected = float(registry.version_tags(settings, spec.name, version).get(f"test_{metric}", "nan"))
    drop = -improvement(metric, realised, expected)
    judged = version == production
    breach = judged and drop > spec.monitoring.max_metric_drop
    detail = (f"v{version}'s predictions for as-of {as_of} ({len(frame)} customers, labels now matured): "
              f"{metric} {realised:.4f} against {expected:.4f} at its test, a drop of {drop:+.4f}")
    if not judged:
        detail += f" (v{version} is no longer Production: reported only)"
    return Check(f"realised_{metric}", f"v{version} as-of {as_of}", realised, spec.monitoring.max_metric_drop,
                 breach, detail)


def age_check(spec: ModelSpec, tags: dict[str, str], as_of: date) -> Check | None:
    """Scheduled retraining: how many data days the Production version's data is behind the newest as-of date."""
    limit = spec.monitoring.max_model_age_days
    data_as_of = tags.get("mlscale.data_as_of") or tags.get("test_as_of")
    if limit is None or data_as_of is None:
        return None
    age = (as_of - date.fromisoformat(data_as_of)).days
    return Check("model_age", "data days", age, limit, age >= limit,
                 f"trained on data up to {data_as_of}, {age} days before as-of {as_of} (limit {limit})")


def _last_request(settings: Settings, model: str) -> date | None:
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "model_monitoring")
        return conn.execute("select max(as_of_date) from ops.model_monitoring where model = %s"
                            " and check_name = 'decision' and breach", (model,)).fetchone()[0]


def decide(spec: ModelSpec, checks: list[Check], as_of: date, last_request: date | None) -> tuple[bool, str]:
    """Retrain when any check breaches, unless a retrain was asked for less than min_days_between_retrains ago."""
    breaches = [c for c in checks if c.breach]
    if not breaches:
        return False, "no breach"
    reason = "; ".join(c.detail for c in breaches[:5]) + (f"; and {len(breaches) - 5} more" if len(breaches) > 5 else "")
    wait = spec.monitoring.min_days_between_retrains
    if last_request is not None and (as_of - last_request).days < wait:
        return False, (f"breach, but a retrain was asked for at as-of {last_request}, less than {wait} days ago "
                       f"(min_days_between_retrains): {reason}")
    return True, reason


def monitor(settings: Settings, spec: ModelSpec, airflow_run_id: str | None = None) -> Report:
    """Check the Production version on the newest as-of date; record the checks and log them; say whether to
    retrain. The decision is recorded by `record_decision`, once the request is out."""
    as_of = features.latest_as_of(settings, spec)
    if as_of is None:
        raise LookupError(f"{spec.table} is empty; run warehouse_etl first")
    production = registry.alias_version(settings, spec.name, "production")
    report = Report(spec.name, production, str(as_of))
    if production is None:
        report.checks.append(Check("reference", "production", None, None, True,
                                   f"{spec.name} has no Production version yet"))
    else:
        tags = registry.version_tags(settings, spec.name, production)
        reference = _reference(settings, spec.name, production)
        if reference is None:
            report.checks.append(Check("reference", f"v{production}", None, None, True,
                                       f"v{production} has no reference profile (registered before monitoring)"))
        else:
            current = features.at(settings, spec, as_of)
            model, _ = artifacts.load_verified(settings, spec.name, production)
            scores = judging.predict(spec, model, current[spec.feature_names])
            report.checks += drift_checks(spec, reference, current, scores)
        report.checks += [c for c in (realised_check(settings, spec, production), age_check(spec, tags, as_of)) if c]
    report.retrain, report.reason = decide(spec, report.checks, as_of, _last_request(settings, spec.name))
    _record(settings, report, report.checks, airflow_run_id)
    _log_to_mlflow(settings, spec, report)
    level = logging.WARNING if report.breaches else logging.INFO
    for check in report.checks:
        log.log(logging.WARNING if check.breach else logging.INFO, "%s %s: %s%s", check.check_name, check.subject,
                check.detail, " BREACH" if check.breach else "")
    log.log(level, "%s v%s as-of %s: %d check(s), %d breach(es); retrain: %s (%s)", spec.name, production, as_of,
            len(report.checks), len(report.breaches), report.retrain, report.reason)
    return report


def _reference(settings: Settings, name: str, version: str) -> dict | None:
    """The reference profile logged with the version's training run, or None when the run has none (a server
    that fails raises: an outage is not a missing profile)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        with tempfile.TemporaryDirectory(prefix="mlscale-profile-") as tmp:
            path = mlflow.artifacts.download_artifacts(run_id=registry.version_run_id(settings, name, version),
                                                       artifact_path=PROFILE_PATH, dst_path=tmp,
                                                       tracking_uri=settings.mlflow_uri)
            return json.loads(Path(path).read_text())
    except MlflowException as exc:
        if registry.not_found(exc):
            return None
        raise


def _record(settings: Settings, report: Report, checks: list[Check], airflow_run_id: str | None) -> None:
    """Record `checks` of a run (its checks, or its decision) in place of what an earlier try of the same run
    recorded of that kind."""
    decision = checks[0].check_name == "decision" if checks else False
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "model_monitoring")
        if airflow_run_id is not None:
            conn.execute("delete from ops.model_monitoring where model = %s and airflow_run_id = %s"
                         " and (check_name = 'decision') = %s", (report.model, airflow_run_id, decision))
        with conn.cursor() as cur:
            cur.executemany(
                "insert into ops.model_monitoring (model, model_version, as_of_date, check_name, subject, value,"
                " threshold, breach, detail, airflow_run_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(report.model, report.version, report.as_of_date, c.check_name, c.subject, c.value, c.threshold,
                  c.breach, c.detail, airflow_run_id) for c in checks],
            )


def record_decision(settings: Settings, report: dict, airflow_run_id: str | None) -> None:
    """Record the decision of a monitoring run once it is acted on: after the retrain request (the asset event)
    went out, or when no retrain was asked for. The cooldown counts from recorded requests only, so a run that
    failed before its request went out (MLflow down while logging, say) never holds back the next one."""
    decided = Report(report["model"], report["version"], report["as_of_date"], retrain=report["retrain"],
                     reason=report["reason"])
    _record(settings, decided, [Check("decision", "retrain" if decided.retrain else "none", None, None,
                                      decided.retrain, decided.reason)], airflow_run_id)


def _log_to_mlflow(settings: Settings, spec: ModelSpec, report: Report) -> None:
    import mlflow

    with tracking.run(settings, f"{spec.name}_monitoring", f"monitor {spec.name} as-of {report.as_of_date}"):
        mlflow.set_tags({"mlscale.model": spec.name, "mlscale.production_version": report.version or "none",
                         "mlscale.as_of_date": report.as_of_date, "mlscale.retrain": str(report.retrain).lower(),
                         "mlscale.reason": report.reason[:5000]})
        mlflow.log_metrics({training.metric_key(c.check_name, c.subject): c.value for c in report.checks if c.value is not None})
        mlflow.log_metric("breaches", len(report.breaches))
        mlflow.log_dict(report.to_dict(), "monitoring_report.json")
