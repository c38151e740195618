"""Test settings: the same server as the demo, but databases `*_test`, MLflow on its own port, data in tmp folders.

Under pytest-xdist (`make test` runs `pytest -n 3`) every worker has a namespace of its own: databases
`*_test_gw0`, `*_test_gw1`, ..., MLflow on 5055 + the worker's number, Airflow home, GX site, dbt target and
reports folders by suffix. What the workers share (the PostgreSQL server, the dbt manifest, the built shops
that `tests.helpers.warehouse_from_template` copies) is made once per run under a file lock.

The environment is exported here, at import, so Airflow reads it before anything imports Airflow.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... in an xdist worker; empty otherwise
os.environ.setdefault("MLSCALE_DB_SUFFIX", "_test")
os.environ.setdefault("MLSCALE_MLFLOW_PORT", "5055")
# Reports the tests write (business report, browser screenshots) are kept here as test artifacts.
os.environ.setdefault("MLSCALE_REPORTS_DIR", str(Path(__file__).resolve().parents[1] / "reports" / "test"))
if WORKER:  # the controller exported the values above; each worker takes its own namespace from them
    os.environ["MLSCALE_DB_SUFFIX"] += f"_{WORKER}"
    os.environ["MLSCALE_MLFLOW_PORT"] = str(int(os.environ["MLSCALE_MLFLOW_PORT"]) + int(WORKER.removeprefix("gw")))
    os.environ["MLSCALE_REPORTS_DIR"] = str(Path(os.environ["MLSCALE_REPORTS_DIR"]) / WORKER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# A failed task retries after 5 s instead of a minute: the retries are the same, the suite does not sleep through them.
os.environ.setdefault("MLSCALE_TASK_RETRY_DELAY", "5")
# One thread per process for OpenMP (scikit-learn's gradient boosting) and BLAS: three workers already share the two
# cores, and a thread pool on a busy core spin-waits (a fit on 2 threads under load: 4.5 CPU-s against 1.7 on one).
# Exported before numpy or scikit-learn is imported; the subprocesses (Airflow tasks, MLflow) inherit it.
for _threads in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

import pytest  # noqa: E402

from mlscale.config import Settings  # noqa: E402
from tests.helpers import drop_templates, empty_warehouse, once_per_run, run_lock, write_spec_variant  # noqa: E402

os.environ.update(Settings.from_env().service_env())


@pytest.fixture(scope="session")
def manifest() -> None:
    """dbt's manifest.json, which warehouse_etl renders from (no database needed); written once per run, as
    every worker parses the bundle from it."""
    from mlscale.local.services import build_dbt_manifest

    settings = Settings.from_env()
    with once_per_run(settings, "dbt-manifest") as first:
        if first:
            build_dbt_manifest(settings)


@pytest.fixture(scope="session")
def stack(manifest) -> Settings:
    """Real PostgreSQL (test databases), migrated Airflow metadata DB and a real MLflow server."""
    from mlscale import postgres
    from mlscale.local import services
    from mlscale.local.setup import setup

    before = services.http_ok(f"{Settings.from_env().mlflow_uri}/health")
    with run_lock(Settings.from_env(), "postgres"):  # one worker starts a private cluster, if one is needed
        postgres.ensure_server(Settings.from_env())
    settings = setup(Settings.from_env(), manifest=False)  # the `manifest` fixture built it, once for every worker
    os.environ.update(settings.service_env())
    yield settings
    if not before:
        services.stop_background(settings, f"mlflow{settings.db_suffix}")


@pytest.fixture
def spec_variant(tmp_path, monkeypatch):
    """`use(model, edit)`: the bundle's only spec is `model`'s shipped one after `edit(data)` changed its YAML data
    (tests.helpers.write_spec_variant). The DAG bag is parsed again with it, and again after the test, so the next
    test on the worker sees the shipped bundle."""
    from mlscale.airflow import dagrun

    def use(model: str, edit) -> None:
        monkeypatch.setenv("MLSCALE_SPECS_DIR", str(write_spec_variant(tmp_path / "specs", model, edit)))
        dagrun.dag_bag.cache_clear()

    yield use
    dagrun.dag_bag.cache_clear()


@pytest.fixture
def warehouse(stack: Settings, tmp_path) -> Settings:
    """An empty test warehouse (schemas dropped) and an empty landing folder in tmp."""
    empty_warehouse(stack)
    landing = tmp_path / "landing"
    landing.mkdir()
    env = {**os.environ, "MLSCALE_LANDING_DIR": str(landing)}
    os.environ["MLSCALE_LANDING_DIR"] = str(landing)
    yield Settings.from_env(env)
    os.environ["MLSCALE_LANDING_DIR"] = str(stack.landing_dir)


# Modules whose tests are independent and need no costly module fixture: xdist spreads their tests one by
# one. Every other module runs whole on one worker, in file order, so its module fixtures are built once.
PER_TEST = {"tests/e2e/test_dirty_data.py", "tests/e2e/test_promotion.py", "tests/integration/test_ci_gates.py",
            "tests/integration/test_ingest_postgres.py", "tests/integration/test_postgres_bootstrap.py",
            "tests/reliability/test_process_faults.py",
            "tests/integration/test_simulation.py", "tests/integration/test_warehouse_build.py",
            "tests/integration/test_warehouse_history.py"}
TIERS = ["e2e", "browser", "integration", "reliability", "dags", "unit"]
# The longest units of work (seconds as measured on a clean clone with 3 workers on 2 cores, 2026-12-03), started
# first so that the shorter ones fill the gaps at the end. A test missing here only starts later; nothing else
# depends on it.
SLOWEST_FIRST = [
    "tests/integration/test_simulation.py::test_under_concept_drift",  # 528
    "tests/e2e/test_real_orders.py",  # 341
    "tests/e2e/test_dirty_data.py::test_daily_increments",  # 230 (300 with its history through Airflow)
    "tests/e2e/test_approval.py",  # 149, building the e2e shop's template on the way (other modules copy it)
    "tests/e2e/test_pipeline.py",  # 232
    "tests/e2e/test_monitoring.py",  # 224
    "tests/e2e/test_orders_only.py",  # 216
    "tests/integration/test_celery_stack.py",  # 220: the chain through the scheduler, Celery and LocalExecutor
    "tests/integration/test_ci_gates.py::test_model_ci",  # 186
    "tests/integration/test_business_report.py",  # 166
    "tests/e2e/test_dirty_data.py::test_a_failing_dbt_test",  # about 150 from the e2e shop's template
    "tests/e2e/test_dirty_data.py::test_null_flood",  # 140
]


def _rank(item) -> int:
    for i, prefix in enumerate(SLOWEST_FIRST):
        if item.nodeid.startswith(prefix):
            return i
    return len(SLOWEST_FIRST) + next((i for i, t in enumerate(TIERS) if f"/tests/{t}/" in str(item.path)), len(TIERS))


def pytest_collection_modifyitems(config, items):
    """The slowest units first, then by tier (e2e, browser, integration, then the fast ones), so that under
    xdist the long tests start at once and the short ones fill the gaps at the end; ties keep file order."""
    items.sort(key=_rank)


def pytest_xdist_make_scheduler(config, log):
    """`-n N`: a module is a unit of work (PER_TEST modules: each test), sent in collection order.

    xdist's own `--dist loadgroup` cannot do this with pytest 9: its `xdist_group` mark rewrites
    `item._nodeid`, which pytest 9 no longer reads (nodeids come from `item._id`), so groups are ignored."""
    if config.getoption("dist") != "load":
        return None  # an explicit --dist mode keeps xdist's own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module in PER_TEST else module

    config.option.loadscopereorder = False  # keep the order above (LoadScope would put the largest modules first)
    return ModuleScheduling(config, log)


def pytest_sessionfinish(session):
    """The controller (or the only process) drops this run's template databases once every worker is done."""
    if not WORKER:
        drop_templates(Settings.from_env())
