"""Train a model spec: time split, bounded search, baseline check, full MLflow record, registered candidate.

`train` reads the data and lineage from the warehouse; `fit_and_log` does the rest on a frame, so the
benchmark and tests run exactly the code the `train_<model>` DAG runs.
"""

from __future__ import annotations

import logging
from importlib.metadata import version as installed_version

import pandas as pd

from mlscale import postgres, registry, tracking
from mlscale.modeling import artifacts, drift, evaluation, features, lineage, model_card, plots, selection
from mlscale.modeling.baseline import measure_all
from mlscale.config import Settings
from mlscale.data import contract
from mlscale.postgres import table_exists
from mlscale.modeling.evaluation import Economics
from mlscale.modeling.judging import NotEnoughData, predict, time_split
from mlscale.specs import ModelSpec, improvement

log = logging.getLogger(__name__)

SEED = 7
# Types beyond skops' defaults that our own pipelines contain; reviewed, and only ever loaded from our registry.
SKOPS_TRUSTED_TYPES = ["numpy.dtype", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                       "mlscale.modeling.btyd.BtydFeatures", "mlscale.modeling.selection.Recalibrated"]
# What a saved pipeline needs to load and predict (mlscale: BtydFeatures and Recalibrated are its classes), pinned
# to this environment; MLflow adds itself. Named, not inferred: MLflow's inference loads the model in a subprocess
# (about 4 s of CPU per logged model) and recorded whatever that process imported (pytest, rich, psycopg under the
# test runner), or unpinned scikit-learn alone when it ran past its timeout on a busy machine.
MODEL_PACKAGES = ("mlscale", "scikit-learn", "skops", "numpy", "scipy", "pandas")
# Permutation importance runs on at most this many test rows, this many times per feature.
IMPORTANCE_ROWS, IMPORTANCE_REPEATS = 5000, 5


def model_requirements() -> list[str]:
    """MODEL_PACKAGES pinned to the versions installed here, as the logged model's requirements."""
    return [f"{package}=={installed_version(package)}" for package in MODEL_PACKAGES]


def search_split(spec: ModelSpec, train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The search's fit part and validation part of the training rows, and the gap between them in days.

    Validation: the last `validation_as_of_dates` training as-of dates. Fit part: the training as-of dates at
    least `validation_gap_days` before them; when the history is too short for any (a young shop), the dates
    just before them, with a warning: the search then risks preferring a model that recognises customers.
    """
    dates = sorted(train["as_of_date"].unique())
    if len(dates) <= spec.split.validation_as_of_dates:
        raise NotEnoughData(f"only {len(dates)} training as-of date(s); need more than "
                            f"{spec.split.validation_as_of_dates}: the last ones validate, the earlier ones fit")
    first_valid = pd.Timestamp(dates[-spec.split.validation_as_of_dates])
    valid_part, before = train[train["as_of_date"] >= first_valid], train[train["as_of_date"] < first_valid]
    gap = spec.split.validation_gap_days
    fit_part = before[before["as_of_date"] <= first_valid - pd.Timedelta(days=gap)]
    if fit_part.empty:
        log.warning("split: no training as-of date is %d days (validation_gap_days) before the first validation "
                    "date %s: the history is too short, so the search fits on the dates just before it, and a "
                    "model that recognises customers may look better on validation than it is", gap,
                    first_valid.date())
        gap, fit_part = 0, before
    return fit_part, valid_part, gap


def load_economics(settings: Settings, model: str) -> Economics:
    """The model's row of the dbt seed model_economics (reference.model_economics)."""
    with postgres.warehouse(settings) as conn:
        if not table_exists(conn, "reference.model_economics"):
            raise LookupError("reference.model_economics is missing: run warehouse_etl (dbt build loads the seed)")
        row = conn.execute("select margin_rate, response_rate, contact_cost from reference.model_economics"
                           " where model = %s", (model,)).fetchone()
    if row is None:
        raise LookupError(f"dbt seed model_economics has no row for {model!r}: add one to "
                          "dbt_project/seeds/model_economics.csv")
    return Economics(*(float(v) for v in row))


def train(settings: Settings, spec: ModelSpec, tags: dict[str, str] | None = None) -> dict:
    """Read the spec's matured rows and lineage from the warehouse, then fit_and_log."""
    window = features.split_window(settings, spec)
    if window and window.train_share < 1:
        log.info("training on a sample of customers: %.1f%% of them, for about %d of the %d training rows "
                 "(split.max_train_rows); the test rows are all read", 100 * window.train_share,
                 spec.split.max_train_rows, window.train_rows_available)
    frame = features.labelled(settings, spec, window)
    dbt_build = lineage.last_dbt_build(settings, spec.table)
    newest = features.latest_as_of(settings, spec)
    run_tags = {"mlscale.dbt_invocation_id": dbt_build.get("invocation_id", "unknown"),
                "mlscale.git_commit": lineage.git_commit(settings),
                # The newest as-of date when trained: monitoring measures the model's age in data days from it.
                "mlscale.data_as_of": str(newest), **(tags or {})}
    run_tags["mlflow.source.git.commit"] = run_tags["mlscale.git_commit"]
    # Monitoring's reference: the customers the model was about to score when it was trained.
    reference = features.at(settings, spec, newest)
    return fit_and_log(settings, spec, frame, load_economics(settings, spec.name), run_tags, reference, window)


def _importance(spec: ModelSpec, model, test: pd.DataFrame) -> list[dict]:
    from sklearn.inspection import permutation_importance

    sample = test.sample(n=min(IMPORTANCE_ROWS, len(test)), random_state=SEED)
    result = permutation_importance(model, sample[spec.feature_names], sample[spec.label].to_numpy(),
                                    scoring=evaluation.SCORERS[spec.primary_metric], n_repeats=IMPORTANCE_REPEATS,
                                    random_state=SEED)
    return [{"feature": f, "importance_mean": float(m), "importance_std": float(s)}
            for f, m, s in zip(spec.feature_names, result.importances_mean, result.importances_std)]


def uninformative(spec: ModelSpec, frame: pd.DataFrame) -> list[str]:
    """Features that are never observed or constant in `frame`: the model can learn nothing from them
    (typically an optional feed that is not delivered)."""
    return [c for c in spec.feature_names if frame[c].nunique(dropna=True) <= 1]


def metric_key(*parts: str) -> str:
    """An MLflow metric key from free text (segment values may hold anything)."""
    return "/".join("".join(c if c.isalnum() or c in "_-. " else "_" for c in p) for p in parts)


def fit_and_log(settings: Settings, spec: ModelSpec, frame: pd.DataFrame, economics: Economics,
                tags: dict[str, str], reference: pd.DataFrame | None = None,
                window: features.Window | None = None) -> dict:
    """Search, refit, test against the baseline, log everything to MLflow; register only if it beats the baseline.

    `reference` is the population monitoring compares later ones with (the newest as-of date's rows when
    trained; default: the test rows). `window`: the features.Window `frame` was read with (default: every matured
    row), logged with the query that read them.
    """
    import mlflow
    from mlflow.models import infer_signature

    split = time_split(frame, spec.split.gap_days)
    train_dates = sorted(split.train["as_of_date"].unique())
    fit_part, valid_part, validation_gap = search_split(spec, split.train)
    valid_dates = sorted(valid_part["as_of_date"].unique())
    log.info("split: %d fit rows, %d validation rows (%s..%s, %d days after the fit part), %d test rows (as-of %s)",
             len(fit_part), len(valid_part), pd.Timestamp(valid_dates[0]).date(), pd.Timestamp(valid_dates[-1]).date(),
             validation_gap, len(split.test), split.test_as_of.date())
    no_information = uninformative(spec, split.train)
    if no_information:
        log.warning("%d of %d features carry no information in the training rows (never observed or constant),"
                    " the model learns without them: %s", len(no_information), len(spec.feature_names),
                    ", ".join(no_information))
    X_train, y_train = split.train[spec.feature_names], split.train[spec.label].to_numpy()
    X_test, y_test = split.test[spec.feature_names], split.test[spec.label].to_numpy()

    with tracking.run(settings, spec.name, f"train_{spec.name}") as run:
        mlflow.set_tags({"mlscale.model": spec.name, **tags})
        query = features.labelled_query(spec, window).as_string()
        train_share = window.train_share if window else 1.0
        digests = {"training": lineage.content_hash(split.train), "testing": lineage.content_hash(split.test)}
        for part, context in ((split.train, "training"), (split.test, "testing")):
            data = lineage.dataset(settings, spec.table, part, query, spec.label, f"{spec.table}:{context}",
                                   digests[context])
            mlflow.log_input(data, context=context, tags=lineage.profile(part, digests[context]))

        searched = selection.search(spec, fit_part, valid_part)
        cand, params, n_configs = searched.chosen.candidate, searched.chosen.params, len(searched.tried)
        raw_model = selection.build_pipeline(spec, cand.name, params).fit(X_train, y_train)
        calibrated = None
        if spec.task == "classification" and spec.calibration.methods:
            # learned from the search's fit of the configuration, which never saw the validation as-of dates
            calibrated = selection.calibrate(spec, searched.chosen.model, raw_model, valid_part)
        model = calibrated.model if calibrated else raw_model
        scores = predict(spec, model, X_test)
        metrics = evaluation.evaluate(spec, y_test, scores)
        raw_scores = predict(spec, raw_model, X_test) if calibrated and calibrated.method else None
        measured = measure_all(spec, split.train, split.test)
        strongest = measured[0]
        baseline_metrics, baseline_scores = strongest.metrics, strongest.scores
        business = evaluation.campaign(spec, economics, split.test, y_test, scores)
        baseline_business = evaluation.campaign(spec, economics, split.test, y_test, baseline_scores)
        segments = evaluation.by_segment(spec, split.test, y_test, scores)
        importance = _importance(spec, model, split.test)

        metric = spec.primary_metric
        delta = improvement(metric, metrics[metric], baseline_metrics[metric])
        registered = delta > 0
        reason = (f"test {metric} {metrics[metric]:.4f} vs the strongest baseline {baseline_metrics[metric]:.4f} "
                  f"({strongest.model.describe()}): improvement {delta:+.4f}")
        lineage_facts = {"dbt_invocation_id": tags.get("mlscale.dbt_invocation_id", "unknown"),
                         "git_commit": tags.get("mlscale.git_commit", "unknown"),
                         "train_sha256": digests["training"]}
        facts = {
            "candidate": cand.name, "params": params, "configurations": n_configs,
            "not_tried": searched.not_tried, "excluded": searched.excluded,
            "calibration": calibrated.method if calibrated else None,
            "calibration_log_loss": calibrated.log_loss if calibrated else {},
            "train_rows": len(split.train), "train_sample_share": round(train_share, 4), "test_rows": len(split.test),
            "train_as_of_min": str(pd.Timestamp(train_dates[0]).date()),
            "train_as_of_max": str(pd.Timestamp(train_dates[-1]).date()), "test_as_of": str(split.test_as_of.date()),
            "metrics": metrics, "baseline_metrics": baseline_metrics, "baseline": strongest.model.describe(),
            "baselines": {m.name: {"describe": m.model.describe(), "metrics": m.metrics} for m in measured},
            "business": business, "segments": segments, "importance": importance,
            "registered": registered, "reason": reason, "lineage": lineage_facts,
            "uninformative_features": no_information, "currency": contract.currency(),
        }

        mlflow.log_params({
            "candidate": cand.name, **{f"model__{k}": v for k, v in params.items()},
            "search_budget": spec.search.budget, "search_max_minutes": spec.search.max_minutes,
            "configurations": n_configs, "configurations_not_tried": len(searched.not_tried),
            "calibration": facts["calibration"] or "none",
            "features": ",".join(spec.feature_names), "label": spec.label, "table": spec.table,
            "btyd_features": ",".join(selection.BtydFeatures.OUTPUTS) if spec.features.btyd else "none",
            "uninformative_features": ",".join(no_information) or "none",
            "train_rows": len(split.train), "train_sample_share": round(train_share, 4), "test_rows": len(split.test),
            "train_as_of_min": facts["train_as_of_min"], "train_as_of_max": facts["train_as_of_max"],
            "test_as_of": facts["test_as_of"], "gap_days": spec.split.gap_days,
            "validation_gap_days": validation_gap,
            "baseline": strongest.model.describe(), "baseline_name": strongest.name,
            "baselines": ",".join(m.name for m in measured), "business_top_k_share": spec.business.top_k_share,
            "economics": f"margin {economics.margin_rate}, response {economics.response_rate}, "
                         f"contact cost {economics.contact_cost}",
        })
        mlflow.log_metrics({
            **{f"test_{k}": v for k, v in metrics.items()},
            **{f"baseline_test_{k}": v for k, v in baseline_metrics.items()},
            **{f"baseline_{m.name}_test_{k}": v for m in measured for k, v in m.metrics.items()},
            **({f"uncalibrated_test_{k}": v for k, v in evaluation.evaluate(spec, y_test, raw_scores).items()}
               if raw_scores is not None else {}),
            **({f"valid_log_loss_calibration_{k}": v for k, v in calibrated.log_loss.items()} if calibrated else {}),
            "search_seconds": searched.seconds,
            **{f"business_{k}": v for k, v in business.items()},
            "baseline_business_profit": baseline_business["profit"],
            **{metric_key("segment", s["segment"], s["value"], f"test_{k}"): v
               for s in segments for k, v in s["metrics"].items()},
        })
        mlflow.log_dict({"tried": [{"candidate": t.candidate.name, "params": t.params, "validation": t.validation}
                                   for t in searched.tried],
                         "chosen": {"candidate": cand.name, "params": params}, "not_tried": searched.not_tried,
                         "excluded_by_log_loss_bound": searched.excluded, "seconds": searched.seconds},
                        "evaluation/search.json")
        figures = (plots.classification(y_test, scores, baseline_scores, raw_scores) if spec.task == "classification"
                   else plots.regression(y_test, scores, baseline_scores))
        figures["permutation_importance.png"] = plots.importance(importance, metric)
        for name, fig in figures.items():
            mlflow.log_figure(fig, f"plots/{name}")
        mlflow.log_dict({"metric": metric, "scoring": evaluation.SCORERS[metric], "rows": importance},
                        "evaluation/permutation_importance.json")
        mlflow.log_dict({"primary_metric": metric, "segments": segments}, "evaluation/segments.json")
        mlflow.log_text(model_card.render(spec, facts), "model_card.md")
        ref = split.test if reference is None else reference
        mlflow.log_dict(drift.profile(spec, ref, predict(spec, model, ref[spec.feature_names]), spec.monitoring.bins),
                        drift.PROFILE_PATH)

        example = X_test.head(5)
        signature = infer_signature(example, predict(spec, model, example))
        with artifacts.quiet_module_probe():
            info = mlflow.sklearn.log_model(model, name="model", signature=signature, input_example=example,
                                            registered_model_name=spec.name if registered else None,
                                            skops_trusted_types=SKOPS_TRUSTED_TYPES,
                                            pip_requirements=model_requirements())
        mlflow.set_tags({"mlscale.registered": str(registered).lower(), "mlscale.baseline_check": reason})
        version = str(info.registered_model_version) if registered else None
        if registered:
            _describe_registered_model(settings, spec)
            _describe_version(settings, spec, version, facts, tags)
            fetched = artifacts.record(settings, spec.name, version)
            log.info("%s v%s artifact sha256 %s (%d bytes) recorded", spec.name, version, fetched.sha256, fetched.size_bytes)
    if registered:
        log.info("registered %s version %s (run %s): %s; %s", spec.name, version, run.info.run_id, metrics, reason)
    else:
        log.warning("%s NOT registered (run %s): the candidate does not beat the baseline: %s",
                    spec.name, run.info.run_id, reason)
    return {"model": spec.name, "version": version, "run_id": run.info.run_id, "candidate": cand.name,
            "params": params, "train_rows": facts["train_rows"], "train_sample_share": facts["train_sample_share"],
            "test_rows": facts["test_rows"], "metrics": metrics, "baseline": facts["baseline"],
            "baseline_metrics": baseline_metrics, "business": business, "registered": registered, "reason": reason}


def retrain_reason(settings: Settings, name: str, request, run_id: str) -> str:
    """What asked for this training, for the `mlscale.retrain_reason` tag: the newest retrain request of model
    `name` (an Airflow asset event whose extra carries monitoring's reason) when no version was registered
    after it, so a run started by hand (or by `dag.test()`) right after a request still names it; else a
    manual run."""
    versions = registry.client(settings).search_model_versions(f"name='{name}'")
    newest = max((v.creation_timestamp for v in versions), default=None)  # ms since the epoch
    if request is not None and (newest is None or request.timestamp.timestamp() * 1000 > newest):
        return str(request.extra.get("reason", ""))[:5000] or f"retrain requested ({run_id})"
    return f"manual run ({run_id}): no retrain request since the newest version"


def _describe_registered_model(settings: Settings, spec: ModelSpec) -> None:
    """The registered model itself (not only each version) says what it is for, from its spec: a reviewer
    opening it in the MLflow UI sees the intended use and limitations, the owner and where the spec lives."""
    from mlscale.specs import ROOT, specs_dir

    limitations = "".join(f"\n- {item}" for item in spec.limitations)
    description = f"{spec.description}\n\nIntended use: {spec.intended_use.strip()}"
    client = registry.client(settings)
    client.update_registered_model(spec.name, description=description + (f"\n\nLimitations:{limitations}"
                                                                          if limitations else ""))
    path = specs_dir() / f"{spec.name}.yml"  # load_spec holds the name to the file name
    tags = {"owner": spec.owner, "task": spec.task, "label": spec.label, "primary_metric": spec.primary_metric,
            "intended_use": spec.intended_use.strip(),
            "spec": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)}
    for key, value in tags.items():
        client.set_registered_model_tag(spec.name, key, value)


def _describe_version(settings: Settings, spec: ModelSpec, version: str, facts: dict, tags: dict[str, str]) -> None:
    metric = spec.primary_metric
    client = registry.client(settings)
    client.update_model_version(
        spec.name, version,
        description=(f"{facts['candidate']} {facts['params']} trained on as-of {facts['train_as_of_min']}.."
                     f"{facts['train_as_of_max']} ({facts['train_rows']} rows); test {metric}="
                     f"{facts['metrics'][metric]:.4f} at as-of {facts['test_as_of']} (baseline "
                     f"{facts['baseline_metrics'][metric]:.4f}); campaign profit {facts['business']['profit']:.2f} "
                     f"{facts['currency']} vs {facts['business']['profit_random']:.2f} at random. See model_card.md "
                     "in the run."),
    )
    version_tags = {
        "candidate": facts["candidate"], f"test_{metric}": f"{facts['metrics'][metric]:.6f}",
        f"baseline_test_{metric}": f"{facts['baseline_metrics'][metric]:.6f}",
        "train_as_of": f"{facts['train_as_of_min']}..{facts['train_as_of_max']}", "test_as_of": facts["test_as_of"],
        "train_sha256": facts["lineage"]["train_sha256"],
        **{k: v for k, v in tags.items() if k.startswith(("mlscale.", "airflow."))},
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(spec.name, version, key, value)
