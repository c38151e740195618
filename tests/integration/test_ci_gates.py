"""The CI gates on real PostgreSQL, dbt and MLflow: dbt slim CI builds only what a change touches, in schemas of
its own; the model CI gate passes the shipped specs and fails a broken one with the gate's reason."""

import dataclasses
import os
import shutil
import subprocess

import pytest
import yaml

from mlscale.local import services
from mlscale.production import ci
from mlscale.specs import SPECS_DIR
from mlscale.data.warehouse import DbtFailed, dbt
from tests.helpers import airflow_shop, scalar

pytestmark = pytest.mark.integration
COVERAGE = "model.mlscale.customer_attribute_coverage"


def _changed_project(settings, tmp_path, old: str, new: str):
    """Settings whose dbt project is a copy of the bundle's with one edit in customer_attribute_coverage.sql."""
    root = tmp_path / "change"
    shutil.copytree(settings.dbt_project_dir, root / "dbt_project",
                    ignore=shutil.ignore_patterns("target*", "logs", "dbt_packages"))
    model = root / "dbt_project" / "models" / "marts" / "core" / "customer_attribute_coverage.sql"
    text = model.read_text()
    assert text.count(old) >= 1
    model.write_text(text.replace(old, new))
    return dataclasses.replace(settings, root=root)


@pytest.fixture
def production(stack, tmp_path):
    """The e2e shop as the production warehouse, and the manifest of the bundle's dbt project (its state)."""
    airflow_shop(stack, tmp_path / "landing")
    state = tmp_path / "state"
    dbt(stack, "parse", "--target-path", str(state))
    return stack, state


def test_slim_ci_builds_only_the_modified_model_in_its_own_schemas(production, tmp_path):
    settings, state = production
    checksum = "select md5(string_agg(t::text, '|' order by t::text)) from core.customer_attribute_coverage t"
    before = scalar(settings, checksum)
    # The change: shares rounded to 3 decimals instead of 4.
    changed = _changed_project(settings, tmp_path, ", 4)", ", 3)")

    result = ci.dbt_slim_ci(changed, state=state, schema="ci_t1", keep=True)

    # Only the modified model (a leaf) and its tests ran; its parent int_customer_versions was deferred to
    # production (no CI schema of the intermediate layer exists), and production is untouched.
    assert {n for n in result.results if n.startswith("model.")} == {COVERAGE}
    assert all("customer_attribute_coverage" in n for n in result.results) and len(result.results) == 4
    assert set(result.results.values()) <= {"success", "pass"}
    assert ci.ci_schemas(settings, "ci_t1") == ["ci_t1_core"]
    assert scalar(settings, "select max(scale(share_imputed_region)) from ci_t1_core.customer_attribute_coverage") == 3
    assert scalar(settings, "select max(scale(share_imputed_region)) from core.customer_attribute_coverage") == 4
    assert scalar(settings, checksum) == before
    ci.drop_ci_schemas(settings, "ci_t1")
    assert ci.ci_schemas(settings, "ci_t1") == []

    # A change that breaks a test fails the gate with dbt's output, and its schemas go all the same.
    broken = _changed_project(settings, tmp_path / "broken", "    signup_date,", "    null::date as signup_date,")
    with pytest.raises(DbtFailed, match="not_null_customer_attribute_coverage_signup_date"):
        ci.dbt_slim_ci(broken, state=state, schema="ci_t2")
    assert ci.ci_schemas(settings, "ci_t2") == []
    assert scalar(settings, checksum) == before


def test_slim_ci_without_a_change_builds_nothing_and_reads_the_base_branch(production, tmp_path):
    settings, state = production
    assert ci.dbt_slim_ci(settings, state=state, schema="ci_t3").results == {}
    assert ci.ci_schemas(settings, "ci_t3") == []
    with pytest.raises(ci.CiFailed, match="cannot read dbt_project at 'no-such-branch'.*git fetch origin main"):
        ci.base_state(settings, "no-such-branch", tmp_path)


def _spec_file(folder, **changes):
    """The shipped churn_90d spec with `changes` (dotted keys) in a file of its own."""
    data = yaml.safe_load((SPECS_DIR / "churn_90d.yml").read_text())
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = value
    folder.mkdir()
    (folder / "churn_90d.yml").write_text(yaml.safe_dump(data))
    return folder / "churn_90d.yml"


def test_model_ci_passes_the_shipped_specs_and_fails_broken_ones_with_the_reason(stack, tmp_path):
    # Broken on purpose: its only feature carries no information (birth year is random in the generator), and
    # a one-split stump that cannot beat 50 recency bins.
    uninformative = _spec_file(tmp_path / "uninformative", **{
        "features": {"numeric": ["age"], "categorical": []}, "baselines": [{"kind": "binned_mean", "feature": "age", "bins": 1}],
        "segments": {}, "business": {"top_k_share": 0.1}, "search.budget": 1})
    stump = _spec_file(tmp_path / "stump", **{
        "features": {"numeric": ["age", "recency_days"], "categorical": []},
        "baselines": [{"kind": "binned_mean", "feature": "recency_days", "bins": 50}], "segments": {}, "business": {"top_k_share": 0.1},
        "candidates": [{"name": "hist_gradient_boosting", "params": {"max_iter": 1, "max_leaf_nodes": 2}}]})
    ci_mlflow = ci.ci_settings(stack).mlflow_uri

    out = subprocess.run([str(services.BIN / "mlscale"), "ci-model", "churn_90d", "revenue_90d", str(uninformative),
                          str(stump)], env={**os.environ, **stack.service_env()}, capture_output=True, text=True,
                         timeout=1200)

    lines = out.stdout.splitlines()
    assert out.returncode == 1 and len(lines) == 5, out.stdout + out.stderr[-3000:]
    assert lines[0].startswith("ci-model: shop of 600 customers over 270 days built in "
                               f"{ci.ci_settings(stack).warehouse_db}")
    assert lines[1].startswith("  PASS churn_90d (churn_90d): passed both gates against the strongest baseline")
    assert lines[2].startswith("  PASS revenue_90d (revenue_90d): passed both gates against the strongest baseline")
    assert lines[3].startswith(f"  FAIL churn_90d ({uninformative}): staging gate: ") and "floor 0.7" in lines[3]
    assert lines[4].startswith(f"  FAIL churn_90d ({stump}): does not beat its baseline: test roc_auc")
    assert "ci-model: CiFailed: 2 of 4 model(s) would not be promoted" in out.stderr
    # The namespace's MLflow server was started for the run and is stopped again.
    assert not services.http_ok(f"{ci_mlflow}/health")
