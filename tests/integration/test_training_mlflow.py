"""Both shipped specs train on a small real warehouse against a real MLflow server, with full tracking."""

import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from mlscale import postgres, registry
from mlscale.airflow import dagrun
from mlscale.modeling import features, judging, lineage, training
from mlscale.config import Settings
from mlscale.specs import LOWER_IS_BETTER, SPECS_DIR, load_spec, load_specs
from tests.helpers import airflow_shop, drop_registered_model, scalar

pytestmark = pytest.mark.integration
SPECS = load_specs()


@pytest.fixture(scope="module")
def built(stack, tmp_path_factory):
    """A small warehouse for the module: a copy of the e2e shop that ingest_landing and warehouse_etl built once for
    the test run (tests.helpers.airflow_shop)."""
    airflow_shop(stack, tmp_path_factory.mktemp("landing"))
    for name in (*SPECS, "churn_weak"):
        drop_registered_model(stack, name)
    mlflow.set_tracking_uri(stack.mlflow_uri)
    return stack


def _artifacts(client, run_id, path=None):
    return sorted(a.path for a in client.list_artifacts(run_id, path))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_train_logs_everything_and_registers_a_version(built, name):
    spec = SPECS[name]
    result = training.train(built, spec, tags={"airflow.run_id": "manual__test"})
    assert result["registered"], result["reason"]
    client = registry.client(built)
    version = client.get_model_version(name, result["version"])
    run = client.get_run(result["run_id"])
    assert version.run_id == run.info.run_id

    # Params: the chosen candidate, its parameters, the data window.
    params = run.data.params
    assert params["candidate"] == result["candidate"] in {c.name for c in spec.candidates}
    assert {f"model__{k}" for k in result["params"]} <= set(params)
    assert params["label"] == spec.label and params["table"] == spec.table
    assert params["uninformative_features"] == "none"  # every feed delivered: every feature varies
    assert int(params["train_rows"]) > int(params["test_rows"]) > 100
    assert params["test_as_of"] > params["train_as_of_max"] >= params["train_as_of_min"]

    # Metrics of model and baseline on the test set, the business value, per-segment metrics.
    metrics = run.data.metrics
    task_metrics = {"roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"} \
        if spec.task == "classification" else {"mae", "rmse", "r2"}
    assert {k.removeprefix("test_") for k in metrics if k.startswith("test_")} == task_metrics
    assert {k.removeprefix("baseline_test_") for k in metrics if k.startswith("baseline_test_")} == task_metrics
    assert metrics[f"test_{spec.primary_metric}"] == pytest.approx(result["metrics"][spec.primary_metric])
    # Every baseline of the spec on the same test rows; the one to beat is the strongest of them.
    names = params["baselines"].split(",")
    assert sorted(names) == sorted(["binned_mean_" + b.feature if b.kind == "binned_mean" else b.kind
                                    for b in spec.baselines])
    per_baseline = {n: metrics[f"baseline_{n}_test_{spec.primary_metric}"] for n in names}
    best = (min if spec.primary_metric in LOWER_IS_BETTER else max)(per_baseline.values())
    assert metrics[f"baseline_test_{spec.primary_metric}"] == best == per_baseline[params["baseline_name"]]
    assert names[0] == params["baseline_name"]  # strongest first
    assert params["btyd_features"] == "btyd_p_alive,btyd_expected_purchases,btyd_p_no_purchase"
    if spec.task == "classification":  # calibrated on held-out as-of dates when that lowers their log loss
        held_out = {k.removeprefix("valid_log_loss_calibration_"): v for k, v in metrics.items()
                    if k.startswith("valid_log_loss_calibration_")}
        assert set(held_out) == {"none", *spec.calibration.methods}
        assert params["calibration"] == min(held_out, key=held_out.get)
        if params["calibration"] != "none":
            assert {k.removeprefix("uncalibrated_test_") for k in metrics if k.startswith("uncalibrated_")} \
                == task_metrics
    assert metrics["business_profit"] > metrics["business_profit_random"]
    assert metrics["business_targeted"] == pytest.approx(round(int(params["test_rows"]) * 0.1 + 0.5), abs=1)
    assert any(k.startswith(f"segment/region/Europe/test_{spec.primary_metric}") for k in metrics)
    assert any(k.startswith("segment/tenure_band/under 90/") for k in metrics)

    # One nested run per searched configuration.
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == int(params["configurations"]) == sum(
        min(spec.search.budget, c.grid_size) for c in spec.candidates)
    assert all(f"valid_{spec.primary_metric}" in c.data.metrics for c in children)
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="evaluation")
    search = json.load(open(f"{local}/search.json"))
    assert len(search["tried"]) == len(children) and search["not_tried"] == []
    assert search["chosen"] == {"candidate": result["candidate"], "params": result["params"]}

    # Plots, importance, segments and the model card.
    plots = ({"roc_curve.png", "pr_curve.png", "calibration_curve.png"} if spec.task == "classification"
             else {"predicted_vs_actual.png", "residuals.png"}) | {"permutation_importance.png"}
    assert _artifacts(client, run.info.run_id, "plots") == sorted(f"plots/{p}" for p in plots)
    importance = json.load(open(f"{local}/permutation_importance.json"))["rows"]
    assert {r["feature"] for r in importance} == set(spec.feature_names)
    segments = json.load(open(f"{local}/segments.json"))["segments"]
    assert {s["segment"] for s in segments} == set(spec.segments)
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    for section in ("## Intended use", "## Data", "## Test metrics", "## Business value", "## Segments",
                    "## Limitations"):
        assert section in card
    assert f"| {spec.primary_metric} | {result['metrics'][spec.primary_metric]:.4f} |" in card
    assert "Every feature varies in the training rows." in card

    # Lineage: datasets with a content digest, the dbt build, the code version, the Airflow run.
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{spec.table}:training", f"{spec.table}:testing"}
    train_input = inputs[f"{spec.table}:training"]
    train_tags = {t.key: t.value for t in train_input.tags}
    assert train_tags["rows"] == params["train_rows"]
    assert (train_tags["as_of_min"], train_tags["as_of_max"]) == (params["train_as_of_min"], params["train_as_of_max"])
    assert train_input.dataset.digest == train_tags["content_sha256"][:32]
    assert json.loads(train_input.dataset.source)["uri"].endswith(f"/{built.warehouse_db}/ml/customer_features")
    columns = {c["name"]: c for c in json.loads(train_input.dataset.schema)["mlflow_colspec"]}
    assert list(columns) == ["customer_id", "as_of_date", *spec.feature_names, spec.label]
    assert columns["customer_id"]["type"] == "long" and columns["customer_id"]["required"]
    assert columns["region"]["type"] == "string" and columns[spec.label]["required"]
    tags = run.data.tags
    assert tags["mlscale.dbt_invocation_id"] == scalar(
        built, "select invocation_id from ops.dbt_model_builds order by built_at desc limit 1")
    assert tags["mlscale.git_commit"] == lineage.git_commit(built)
    assert tags["airflow.run_id"] == "manual__test"

    # The registered version: signature, description and tags.
    model_info = mlflow.models.get_model_info(f"models:/{name}/{result['version']}")
    assert model_info.signature.inputs.input_names() == spec.feature_names
    # Its requirements are the packages the pipeline loads with, pinned to this environment (not inferred).
    requirements = open(mlflow.pyfunc.get_model_dependencies(f"models:/{name}/{result['version']}")).read().split()
    assert requirements == [f"mlflow=={mlflow.__version__}", *training.model_requirements()]
    assert any(r.startswith("scikit-learn==1.") for r in requirements) and not any("pytest" in r for r in requirements)
    assert spec.primary_metric in version.description and "baseline" in version.description
    assert version.tags["train_sha256"] == train_tags["content_sha256"]
    assert version.tags["mlscale.dbt_invocation_id"] == tags["mlscale.dbt_invocation_id"]
    assert float(version.tags[f"test_{spec.primary_metric}"]) == pytest.approx(result["metrics"][spec.primary_metric])
    # The registered model itself: what it is for, who owns it, where its spec is.
    registered = client.get_registered_model(name)
    assert registered.description.startswith(spec.description) and spec.intended_use.strip() in registered.description
    assert all(item in registered.description for item in spec.limitations)
    assert registered.tags == {"owner": "data_scientist", "task": spec.task, "label": spec.label,
                               "primary_metric": spec.primary_metric, "intended_use": spec.intended_use.strip(),
                               "spec": f"include/models/{name}.yml"}


def test_same_data_and_seed_give_the_same_model(built):
    # The shipped spec with two sampled configurations per candidate: the same sampling, fits and calibration
    # as its full search, at a fraction of the cost (the other tests here train it whole).
    spec = SPECS["churn_90d"].model_copy(update={"search": SPECS["churn_90d"].search.model_copy(update={"budget": 2})})
    first, second = training.train(built, spec), training.train(built, spec)
    assert first["version"] != second["version"]
    assert (first["candidate"], first["params"]) == (second["candidate"], second["params"])
    assert first["metrics"] == second["metrics"]
    assert first["business"] == second["business"]


def test_training_reads_only_the_rows_its_time_split_keeps(built):
    spec = SPECS["churn_90d"].model_copy(update={"split": SPECS["churn_90d"].split.model_copy(
        update={"max_train_rows": None})})
    gap = spec.split.gap_days
    every = features.labelled(built, spec)
    whole, window = judging.time_split(every, gap), features.split_window(built, spec)
    assert (pd.Timestamp(window.test_as_of), window.train_share, window.train_rows_available) == (
        whole.test_as_of, 1.0, None)  # no cap: nothing counted, nothing sampled
    shipped = features.split_window(built, SPECS["churn_90d"])  # its cap is far above this shop's rows: no sample
    assert (shipped.train_share, shipped.train_rows_available) == (1.0, len(whole.train))
    read = features.labelled(built, spec, window)
    assert len(whole.train) + len(whole.test) == len(read) < len(every)  # the gap's as-of dates are not read
    again = judging.time_split(read, gap)
    assert again.test_as_of == whole.test_as_of
    for part, expected in ((again.train, whole.train), (again.test, whole.test)):
        pd.testing.assert_frame_equal(part.reset_index(drop=True), expected.reset_index(drop=True))

    # split.max_train_rows: a third of the training rows -> every training row of about a third of the customers
    capped = spec.model_copy(update={"split": spec.split.model_copy(update={"max_train_rows": len(whole.train) // 3})})
    window = features.split_window(built, capped)
    assert window.train_rows_available == len(whole.train) and window.train_share == pytest.approx(1 / 3, rel=0.01)
    sample = judging.time_split(features.labelled(built, capped, window), gap)
    pd.testing.assert_frame_equal(sample.test.reset_index(drop=True), whole.test.reset_index(drop=True))
    customers = set(sample.train["customer_id"])
    assert customers < set(whole.train["customer_id"])
    kept = whole.train[whole.train["customer_id"].isin(customers)]
    pd.testing.assert_frame_equal(sample.train.reset_index(drop=True), kept.reset_index(drop=True))
    assert 0.2 < len(sample.train) / len(whole.train) < 0.47


def test_features_are_read_as_the_doubles_postgresql_casts_them_to_and_other_types_are_refused(built):
    spec = SPECS["revenue_90d"]  # a numeric(14,2) label besides numeric and integer features
    numeric = [*spec.features.numeric, spec.label]
    frame = features.labelled(built, spec)
    casts = ", ".join(f"{c}::float8" for c in numeric)
    with postgres.warehouse(built) as conn:
        rows = conn.execute(f"select {casts} from {spec.table} where {spec.label} is not null"
                            " order by as_of_date, customer_id").fetchall()
    cast = np.array(rows, dtype=float)
    read = frame[numeric].to_numpy()
    assert len(frame) == len(rows) > 1000 and np.isnan(read).any()  # NULLs are NaN in both
    assert (np.isnan(read) == np.isnan(cast)).all()
    assert (np.nan_to_num(read).view(np.int64) == np.nan_to_num(cast).view(np.int64)).all()  # bit for bit
    assert frame["amount_90d"].map(lambda v: v != round(v)).any()  # cents, not only whole numbers

    # a numeric feature that is not a number: refused with the column named, before anything is read
    with postgres.warehouse(built) as conn:
        conn.execute("create or replace view ml.features_with_a_flag as select customer_id, as_of_date,"
                     " tenure_days > 365 as tenure_days, recency_days::text as recency_days, region,"
                     " acquisition_channel, churned_90d from ml.customer_features")
    flagged = SPECS["churn_90d"].model_copy(update={"table": "ml.features_with_a_flag", "features": SPECS[
        "churn_90d"].features.model_copy(update={"numeric": ["tenure_days", "recency_days"]})})
    try:
        with pytest.raises(TypeError, match=r"these are not: tenure_days \(boolean\), recency_days \(text\)$"):
            features.labelled(built, flagged)
    finally:
        with postgres.warehouse(built) as conn:
            conn.execute("drop view ml.features_with_a_flag")


def test_the_search_time_budget_tries_each_candidate_once_and_logs_the_rest(built):
    spec = SPECS["churn_90d"]
    hurried = spec.model_copy(update={"search": spec.search.model_copy(update={"max_minutes": 1e-6})})
    result = training.train(built, hurried)
    run = registry.client(built).get_run(result["run_id"])
    planned = sum(min(spec.search.budget, c.grid_size) for c in spec.candidates)
    # the budget is spent before the second configuration: each candidate's first runs, nothing else
    assert run.data.params["configurations"] == str(len(spec.candidates))
    assert run.data.params["configurations_not_tried"] == str(planned - len(spec.candidates))
    local = mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="evaluation")
    search = json.load(open(f"{local}/search.json"))
    assert [t["candidate"] for t in search["tried"]] == [c.name for c in spec.candidates]
    assert len(search["not_tried"]) == planned - len(spec.candidates)
    assert all(line.split(" ")[0] in {c.name for c in spec.candidates} for line in search["not_tried"])
    card = mlflow.artifacts.load_text(f"runs:/{result['run_id']}/model_card.md")
    assert f"left {planned - len(spec.candidates)} configuration(s) untried" in card


def _weak_spec(folder):
    """churn_90d, but the only candidate is a one-split stump (two distinct scores): it cannot beat 50 recency bins."""
    data = yaml.safe_load((SPECS_DIR / "churn_90d.yml").read_text())
    data.update(name="churn_weak", features={"numeric": ["age", "recency_days"], "categorical": []},
                baselines=[{"kind": "binned_mean", "feature": "recency_days", "bins": 50}], segments={},
                business={"top_k_share": 0.1},
                candidates=[{"name": "hist_gradient_boosting",
                             "params": {"max_iter": 1, "max_leaf_nodes": 2, "learning_rate": 0.1}}])
    path = folder / "churn_weak.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_model_that_does_not_beat_the_baseline_is_logged_not_registered(built, tmp_path):
    spec = load_spec(_weak_spec(tmp_path))
    with built_economics(built, spec.name):
        result = training.train(built, spec)
    assert not result["registered"] and result["version"] is None
    assert result["reason"].startswith("test roc_auc") and "vs the strongest baseline" in result["reason"]
    client = registry.client(built)
    run = client.get_run(result["run_id"])
    assert run.data.tags["mlscale.registered"] == "false"
    assert run.data.tags["mlscale.baseline_check"] == result["reason"]
    assert "**not registered**" in mlflow.artifacts.load_text(f"runs:/{result['run_id']}/model_card.md")
    assert len(run.outputs.model_outputs) == 1  # the model is kept with its run, only not registered
    assert client.search_model_versions("name='churn_weak'") == []


def test_train_dag_skips_and_announces_nothing_when_the_baseline_wins(built, tmp_path, monkeypatch):
    _weak_spec(tmp_path)
    monkeypatch.setenv("MLSCALE_SPECS_DIR", str(tmp_path))
    dagrun.dag_bag.cache_clear()
    try:
        with built_economics(built, "churn_weak"):
            result = dagrun.run_dag(Settings.from_env(), "train_churn_weak")
    finally:
        dagrun.dag_bag.cache_clear()
    assert result.task_states == {"train": "skipped"}
    assert result.state == "success"
    assert registry.client(built).search_model_versions("name='churn_weak'") == []


class built_economics:
    """Temporarily give `model` the churn economics in reference.model_economics."""

    def __init__(self, settings, model):
        self.settings, self.model = settings, model

    def _sql(self, sql):
        with postgres.warehouse(self.settings) as conn:
            conn.execute(sql, (self.model,))

    def __enter__(self):
        self._sql("insert into reference.model_economics (model, margin_rate, response_rate, contact_cost, campaign)"
                  " select %s, margin_rate, response_rate, contact_cost, 'test' from reference.model_economics"
                  " where model = 'churn_90d'")

    def __exit__(self, *exc):
        self._sql("delete from reference.model_economics where model = %s")


def test_registry_lookups_use_the_configured_server_and_never_create_a_local_mlflow_db(stack, tmp_path):
    """Without MLFLOW_TRACKING_URI, MLflow's default is a mlflow.db in the working directory (that is how one got
    committed once). Every registry lookup and training's retrain reason go to the settings' server instead, and
    a run through `tracking.run` points MLflow's fluent API there only while it lasts."""
    name = "mlscale_no_local_store"
    drop_registered_model(stack, name)
    script = f"""
import json, os
import mlflow
from mlscale import registry, tracking
from mlscale.modeling import training
from mlscale.config import Settings
settings = Settings.from_env()
registry.client(settings).create_registered_model({name!r})
with tracking.run(settings, {name!r}, "a run") as run:
    mlflow.log_metric("x", 1.0)
print(json.dumps({{"state": registry.registry_state(settings, {name!r}),
                  "production": registry.alias_version(settings, {name!r}, "production"),
                  "reason": training.retrain_reason(settings, {name!r}, None, "run-1"),
                  "run_id": run.info.run_id, "uri_set_after_the_run": mlflow.is_tracking_uri_set(),
                  "env_after_the_run": os.environ.get("MLFLOW_TRACKING_URI")}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"state": [], "production": None,
                   "reason": "manual run (run-1): no retrain request since the newest version",
                   "run_id": out["run_id"], "uri_set_after_the_run": False, "env_after_the_run": None}
    assert list(tmp_path.iterdir()) == []  # no mlflow.db (nor mlruns) where it ran
    # the model and the run it created are on the configured server
    assert [m.name for m in registry.client(stack).search_registered_models(f"name='{name}'")] == [name]
    assert registry.client(stack).get_run(out["run_id"]).data.metrics == {"x": 1.0}
    drop_registered_model(stack, name)


def test_the_mlflow_server_runs_without_its_job_runner(stack):
    """The bundle runs no MLflow jobs (GenAI judges, trace rollups): services.ensure_mlflow starts the server with
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, so no huey consumer sits idle beside it (BENCHMARKS.md: the saving)."""
    import psutil

    pid_file = stack.run_dir / f"mlflow{stack.db_suffix}.pid"
    if not pid_file.exists():
        pytest.skip("the MLflow server at the test port was started outside the tests")
    pgid = int(pid_file.read_text())
    commands = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(process.pid) == pgid:
                commands.append(" ".join(process.info["cmdline"] or []))
        except ProcessLookupError:
            continue
    assert any("mlflow" in c and "server" in c for c in commands), commands
    assert not any("huey" in c or "_job_runner" in c for c in commands), commands
