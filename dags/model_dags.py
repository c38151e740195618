"""
DAG factory over the model specs in `include/models/*.yml`: each spec gets its own
`train_<model>`, `promote_<model>` and `score_<model>` DAGs. Adding a spec file adds its DAGs.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk import Param, dag, get_current_context, task

from mlscale.assets import CUSTOMER_FEATURES, PREDICTIONS, START_DATE, candidate_asset, default_args
from mlscale.specs import ModelSpec, load_specs

TRAIN_DOC = """
### train_{name} — train `{name}` and register a candidate version

**Owner:** Data Scientist · **Triggered by:** the `ml.customer_features` asset (a finished `warehouse_etl`).

{description}

Reads matured rows of `{table}` (label `{label}`), splits by as-of date (test = the latest matured
as-of date; training only on as-of dates at least {gap} days earlier), tries up to {budget} parameter
combinations of each of {candidates} (one nested MLflow run each), picks the best on the last {valid}
training as-of dates by `{metric}`, refits it and tests it against the naive baseline ({baseline}).

Logged to the MLflow experiment `{name}`: params, test metrics of model and baseline, per-segment
metrics, the campaign profit (economics: dbt seed `model_economics`), ROC/PR/calibration or residual
plots, permutation importance, `model_card.md`, signature, input example, the training and test
datasets (content digest) and tags for the dbt invocation, git commit and this Airflow run.

**Produces:** a registered version and the `{name}_candidate` asset (extra: model, version, run_id),
which triggers `promote_{name}`. A model that does not beat the baseline is logged but not registered:
the task is **skipped** with the reason in its log, and nothing is promoted.
"""

PROMOTE_DOC = """
### promote_{name} — Staging and Production gates for `{name}`

**Owner:** Production Engineer · **Triggered by:** the `{name}_candidate` asset, or by hand
(param `version`; empty = the newest version without a stage).

The candidate and the current Production version are both re-evaluated now on the latest matured
as-of date. **Staging gate:** the model loads from the registry and predicts; `{metric}` and the
spec's other floors ({floors}) hold → stage `Staging`, alias `staging`. **Production gate:** the
candidate beats Production by at least {margin} on `{metric}` (or there is no Production yet) →
stage `Production`, alias `production`, the old version `Archived` and aliased `previous_production`.
Each decision is a row in `ops.model_promotions` and a `promotion` tag on the version.
"""

SCORE_DOC = """
### score_{name} — daily batch scoring with `models:/{name}@production`

**Owner:** Production Engineer · **Schedule:** daily, and by hand (param `as_of_date`; empty = latest).

Scores every active customer of the as-of date and replaces that day's rows of `ml.predictions`
(model, version, as-of date, customer, score, decile) in one transaction: a rerun never duplicates.
"""


def _train_dag(spec: ModelSpec):
    candidate = candidate_asset(spec.name)

    @dag(
        dag_id=f"train_{spec.name}",
        schedule=[CUSTOMER_FEATURES],
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args("data_scientist", retries=1),
        tags=["data-scientist", "training", spec.name],
        doc_md=TRAIN_DOC.format(
            name=spec.name, description=spec.description, table=spec.table, label=spec.label,
            gap=spec.split.gap_days, candidates=", ".join(c.name for c in spec.candidates),
            valid=spec.split.validation_as_of_dates, metric=spec.primary_metric, budget=spec.search.budget,
            baseline=f"training label mean per bin of {spec.baseline.feature}",
        ),
    )
    def train_dag():
        @task(outlets=[candidate])
        def train() -> dict:
            """Train, log to MLflow, register a version; announce it on the candidate asset."""
            from mlscale.config import settings
            from mlscale.specs import load_specs
            from mlscale.training import train

            context = get_current_context()
            result = train(settings(), load_specs()[spec.name],
                           tags={"airflow.dag_id": context["dag"].dag_id, "airflow.run_id": context["run_id"]})
            if not result["registered"]:
                # Skipped, not failed: training worked, the model is just not worth promoting. No asset event.
                raise AirflowSkipException(f"not registered: does not beat the baseline: {result['reason']}")
            context["outlet_events"][candidate].extra = {
                "model": result["model"], "version": result["version"], "run_id": result["run_id"]}
            return result

        train()

    return train_dag()


def _promote_dag(spec: ModelSpec):
    @dag(
        dag_id=f"promote_{spec.name}",
        schedule=[candidate_asset(spec.name)],
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,  # one promotion per model at a time
        default_args=default_args("production_engineer", retries=1),
        params={"version": Param(None, type=["null", "string"], description="Registered version to promote; empty = newest unstaged")},
        tags=["production-engineer", "promotion", spec.name],
        doc_md=PROMOTE_DOC.format(
            name=spec.name, metric=spec.primary_metric, floors=spec.promotion.staging.min_metrics,
            margin=spec.promotion.production.min_improvement,
        ),
    )
    def promote_dag():
        @task
        def promote() -> dict:
            """Run the gates and move stages and aliases; record the decision."""
            from mlscale.config import settings
            from mlscale.registry import decision_dict, promote
            from mlscale.specs import load_specs

            context = get_current_context()
            decision = promote(settings(), load_specs()[spec.name], version=context["params"].get("version"),
                               airflow_run_id=context["run_id"])
            return decision_dict(decision)

        promote()

    return promote_dag()


def _score_dag(spec: ModelSpec):
    @dag(
        dag_id=f"score_{spec.name}",
        schedule="@daily",
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args("production_engineer"),
        params={"as_of_date": Param(None, type=["null", "string"], format="date", description="As-of date to score; empty = latest")},
        tags=["production-engineer", "scoring", spec.name],
        doc_md=SCORE_DOC.format(name=spec.name),
    )
    def score_dag():
        @task(outlets=[PREDICTIONS])
        def score() -> dict:
            """Score the as-of date with the Production version into ml.predictions."""
            from datetime import date

            from mlscale.config import settings
            from mlscale.scoring import score
            from mlscale.specs import load_specs

            as_of = get_current_context()["params"].get("as_of_date")
            return score(settings(), load_specs()[spec.name], date.fromisoformat(as_of) if as_of else None)

        score()

    return score_dag()


for _spec in load_specs().values():
    for _factory in (_train_dag, _promote_dag, _score_dag):
        _dag = _factory(_spec)
        globals()[_dag.dag_id] = _dag
