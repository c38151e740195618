"""The chain through Airflow's scheduler, not dag.test(): `make up`'s processes with the LocalExecutor (its default)
and with the CeleryExecutor (two workers, Redis). A day of files lands, ingest_landing is triggered through the REST
API, and the assets carry it through warehouse_etl, monitor_, train_, promote_ and score_ to business_report by
themselves. With Celery the chain stops after warehouse_etl (the DAGs after it paused through the REST API): its 36
tasks spread over both workers, and the rest of the chain would only run the same DAGs a second time (half of the
test's CPU, on a suite at its time budget)."""

import json
import os
import time
import urllib.request
from datetime import datetime, timezone

import pytest
import redis
from airflow.utils.net import getfqdn

from mlscale import postgres, registry
from mlscale.config import Settings
from mlscale.local import airflow_ui
from mlscale.local.datagen import ShopParams, generate
from tests.helpers import free_port, one_configuration, write_spec_variant

pytestmark = pytest.mark.integration
MODEL = "churn_90d"
PARAMS = ShopParams(customers=600, days=270, seed=21)  # the shop of tests/e2e/test_pipeline.py
# The chain in the order the assets carry it.
CHAIN = ("ingest_landing", "warehouse_etl", f"monitor_{MODEL}", f"train_{MODEL}", f"promote_{MODEL}", f"score_{MODEL}",
         "business_report")
TIMEOUT = 900


def _metadata(settings, sql: str, *args) -> list[tuple]:
    with postgres.database(settings, settings.airflow_db) as conn:
        return conn.execute(sql, args).fetchall()


def _rest(url: str, path: str, body: dict, token: str | None = None, method: str = "POST") -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _wait(settings, what: str, done, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while not (result := done()):
        if time.monotonic() > deadline:
            runs = _metadata(settings, "select dag_id, run_type, state from dag_run order by id")
            pytest.fail(f"{what}: not within {timeout:.0f} s; DAG runs: {runs}")
        time.sleep(3)
    return result


@pytest.fixture
def running_stack(request, stack, tmp_path):
    """`mlscale up --executor <param>` as on a new machine, in a namespace of its own: new databases (an Airflow
    metadata DB with no other test's DAGs, runs or queued asset events), its own MLflow server, ports, folders and
    Redis database. At the end `mlscale down`'s stop and the databases dropped."""
    executor = request.param
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    broker = f"redis://127.0.0.1:6379/{10 + worker}"
    env = {"MLSCALE_PG_DSN": stack.pg_dsn, "MLSCALE_DB_SUFFIX": f"{stack.db_suffix}_stack",
           # churn_90d alone, its search cut to one configuration: the chain, its DAGs and the training the
           # scheduler runs are the bundle's; the shipped searches (half of the test's CPU) are judged elsewhere.
           "MLSCALE_SPECS_DIR": str(write_spec_variant(tmp_path / "specs", MODEL, one_configuration)),
           "MLSCALE_MLFLOW_PORT": str(free_port()), "MLSCALE_AIRFLOW_PORT": str(free_port()),
           "MLSCALE_STATE_DIR": str(tmp_path / "state"), "MLSCALE_LANDING_DIR": str(tmp_path / "landing"),
           "MLSCALE_REPORTS_DIR": str(tmp_path / "reports"), "MLSCALE_CELERY_BROKER_URL": broker,
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           # The bundle's files do not change during the test: the dag-processor parses them once instead of every
           # 30 s (Airflow's default; each round of the 5 files took 3.7 s of a busy core here).
           "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600"}
    saved = dict(os.environ)  # `up` exports the stack's settings (setup does): all of it is put back at the end
    os.environ.update(env)
    settings = Settings.from_env()
    try:
        airflow_ui.ensure_broker(settings)  # the machine's Redis, or one started for the test (stopped below)
        redis.Redis.from_url(broker).flushdb()  # nothing queued by an earlier run
        since = datetime.now(timezone.utc)
        airflow_ui.up(settings, executor=executor)
        yield executor, settings, since
    finally:
        airflow_ui.down(settings)
        postgres.drop_databases(settings, [settings.warehouse_db, settings.airflow_db, settings.mlflow_db])
        os.environ.clear()
        os.environ.update(saved)


def _run_chain(running_stack, last: str):
    """Land a day, trigger ingest_landing through the REST API (the DAGs of CHAIN after `last` paused), wait for the
    chain to `last` to finish by itself, and check what both executors promise: each DAG once after the trigger
    (the manual run, then asset-triggered ones), every task at its first try, nothing failed since the stack
    started, the day in the warehouse. Returns the settings and the hosts that ran tasks."""
    executor, settings, since = running_stack
    chain = set(CHAIN[:CHAIN.index(last) + 1])
    url = f"http://127.0.0.1:{airflow_ui.ui_port()}"
    # The daily DAGs' run for today, which the scheduler creates once they are unpaused, happens first (on no
    # data: ingest_landing skips, score_ skips without a Production version); the day lands after it.
    _wait(settings, "the scheduler's first pass", lambda: _metadata(
        settings, "select 1 from dag where dag_id = 'ingest_landing' and next_dagrun_create_after > now()"), 120)
    _wait(settings, "today's scheduled runs", lambda: not _metadata(
        settings, "select 1 from dag_run where state in ('queued', 'running')"), 300)
    password = json.loads((settings.airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
    token = _rest(url, "/auth/token", {"username": airflow_ui.ADMIN_USER,
                                       "password": password[airflow_ui.ADMIN_USER]})["access_token"]
    for dag_id in sorted(set(CHAIN) - chain):
        assert _rest(url, f"/api/v2/dags/{dag_id}", {"is_paused": True}, token, method="PATCH")["is_paused"]
    stats = generate(PARAMS, settings.landing_dir)
    started = datetime.now(timezone.utc)

    triggered = _rest(url, "/api/v2/dags/ingest_landing/dagRuns", {"logical_date": None}, token)
    assert triggered["state"] == "queued" and triggered["triggered_by"] == "rest_api"

    def chain_done():
        runs = _metadata(settings, "select dag_id, state from dag_run where queued_at >= %s", started)
        if any(state == "failed" for _, state in runs):
            pytest.fail(f"a DAG run failed: {runs}")
        finished = {dag_id for dag_id, state in runs if state == "success"}
        return runs if chain <= finished and all(state == "success" for _, state in runs) else None

    runs = _wait(settings, f"{executor}: the chain to {last}", chain_done)

    after = _metadata(settings, "select dag_id, run_id, run_type from dag_run where queued_at >= %s", started)
    assert sorted(d for d, _, _ in after) == sorted({d for d, _ in runs}) == sorted(chain), after
    assert {(d, t) for d, _, t in after if d == "ingest_landing"} == {("ingest_landing", "manual")}
    assert {t for d, _, t in after if d != "ingest_landing"} == {"asset_triggered"}
    tries = _metadata(settings, "select ti.dag_id, ti.task_id, ti.try_number, ti.hostname, ti.state from task_instance ti"
                                " join dag_run r on r.dag_id = ti.dag_id and r.run_id = ti.run_id where r.queued_at >= %s",
                      started)
    assert {n for _, _, n, _, _ in tries} == {1}, [t for t in tries if t[2] != 1]
    # nor did anything fail since the stack started (today's scheduled runs before the day landed included)
    assert not _metadata(settings, "select dag_id, run_id from dag_run where state = 'failed' and queued_at >= %s", since)
    with postgres.warehouse(settings) as conn:
        assert conn.execute("select count(*) from raw.orders").fetchone()[0] == stats.rows["orders"]
        assert conn.execute("select count(*) from ops.ingest_files where etl_status = 'published'").fetchone()[0] \
            == sum(stats.files.values())
    # (the scheduler marks EmptyOperator tasks done itself: they have no host)
    return settings, {host for _, _, _, host, state in tries if state == "success" and host}


@pytest.mark.parametrize("running_stack", ["local"], indirect=True)
def test_the_local_executor_runs_the_whole_chain_by_itself(running_stack):
    settings, hosts = _run_chain(running_stack, "business_report")

    assert hosts == {getfqdn()}
    # A Production version serves, and it scored every active customer of the newest as-of date once.
    with postgres.warehouse(settings) as conn:
        latest, active = conn.execute("select as_of_date, count(*) from ml.customer_features"
                                      " group by 1 order by 1 desc limit 1").fetchone()
        scored = conn.execute("select model_version, as_of_date, count(distinct customer_id) from ml.predictions"
                              " group by 1, 2").fetchall()
    assert registry.registry_state(settings, MODEL) == [{"version": "1", "stage": "Production",
                                                         "aliases": ["production"]}]
    assert scored == [("1", latest, active)]
    assert "<h1>Business report</h1>" in (settings.reports_dir / "business_report.html").read_text()


@pytest.mark.parametrize("running_stack", ["celery"], indirect=True)
def test_the_celery_executor_spreads_the_tasks_over_both_workers(running_stack):
    settings, hosts = _run_chain(running_stack, "warehouse_etl")

    assert hosts == {f"{getfqdn()}-worker-1", f"{getfqdn()}-worker-2"}  # both workers took tasks, and said so
    with postgres.warehouse(settings) as conn:
        assert conn.execute("select count(distinct as_of_date) from ml.customer_features").fetchone()[0] > 1
