"""The GitHub Actions workflow cannot run here: it is checked by parsing, against .ci/run, the Makefile, the
Python the project needs and the PostgreSQL docker-compose.yml runs."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
JOBS = WORKFLOW["jobs"]


def _run(job: str) -> str:
    return "\n".join(step.get("run", "") for step in JOBS[job]["steps"])


def test_the_test_job_runs_what_ci_runs_here():
    assert re.search(r"^\s*bash \.ci/run\s*$", _run("test"), re.M)
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make install$", ci_run, re.M) and re.search(r"^make test$", ci_run, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: .*\n\t\$\(BIN\)/python -m pytest -n \$\(TEST_WORKERS\)$", makefile, re.M)
    assert JOBS["test"]["timeout-minutes"] <= 90


def test_the_same_python_and_postgresql_as_the_project():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.12"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", dockerfile, re.M)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    postgres_major = compose["services"]["postgres"]["image"].split(":")[1].split(".")[0]
    for name in ("test", "dbt-slim-ci", "model-ci"):
        job = JOBS[name]
        assert job["container"] == "python:3.11-bookworm", name  # Debian 12, as the Dockerfile's base
        assert job["services"]["postgres"]["image"] == f"postgres:{postgres_major}", name
        assert "pg_isready" in job["services"]["postgres"]["options"], name
    assert WORKFLOW["env"]["MLSCALE_PG_DSN"].startswith("postgresql://postgres:postgres@postgres:5432/")  # pragma: allowlist secret


def test_debian_chromium_and_a_venv_cached_on_the_lock():
    assert "apt-get install -y -q chromium" in _run("test")
    for name in ("test", "dbt-slim-ci", "model-ci"):
        cache = next(s for s in JOBS[name]["steps"] if s.get("uses", "").startswith("actions/cache@"))
        assert cache["with"]["path"] == ".venv"
        assert "hashFiles('requirements.lock', 'pyproject.toml')" in cache["with"]["key"], name
        # make reinstalls when the lock is newer than the stamp, which a fresh checkout always is
        touch = next(s for s in JOBS[name]["steps"] if s.get("run", "").strip() == "touch .venv/.installed")
        assert touch["if"] == "steps.venv.outputs.cache-hit == 'true'"


def test_slim_ci_and_model_ci_run_on_the_changes_that_need_them():
    diff = next(s for s in JOBS["changes"]["steps"] if s.get("id") == "diff")["run"]
    dbt = re.search(r'echo "dbt=\$\(touched \'(.+?)\'\)"', diff).group(1)
    models = re.search(r'echo "models=\$\(touched \'(.+?)\'\)"', diff).group(1)
    assert re.search(dbt, "dbt_project/models/staging/shop/stg_shop__orders.sql")
    assert not re.search(dbt, "include/mlscale/data/ingest.py")
    for path in ("include/models/churn_90d.yml", "include/mlscale/modeling/training.py",
                 "dbt_project/models/marts/ml/customer_features.sql"):
        assert re.search(models, path), path
    assert not re.search(models, "dbt_project/models/marts/kpi/kpi_daily.sql")
    assert "make dbt-ci BASE=origin/${{ github.base_ref }}" in _run("dbt-slim-ci")
    assert JOBS["dbt-slim-ci"]["if"].startswith("github.event_name == 'pull_request'")
    assert "needs.changes.outputs.models == 'true'" in JOBS["model-ci"]["if"]
    assert re.search(r"^\s*make ci-model$", _run("model-ci"), re.M)
    assert "ci-model: $(INSTALLED)\n\t$(BIN)/mlscale ci-model $(MODELS)" in (ROOT / "Makefile").read_text()
