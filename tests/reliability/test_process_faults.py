"""Processes killed and servers restarted in the middle of the work (RELIABILITY.md): a PostgreSQL restart during
a COPY (a private cluster this test starts), a SIGKILL of the process running a dbt build, an MLflow restart
during training and during a promotion. Each time nothing is left half-written and the retry finishes."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from mlscale import postgres, registry
from mlscale.config import Settings
from mlscale.data.ingest import ingest_landing
from mlscale.local import services
from mlscale.local.datagen import generate
from mlscale.modeling import artifacts
from tests.helpers import (AIRFLOW_SHOP, airflow_shop, checksum, drop_registered_model, free_port, query, scalar,
                           one_configuration, server_folder)
from tests.reliability.conftest import Stopwatch

pytestmark = pytest.mark.reliability
MODEL = "churn_90d"


def _orders(path: Path, first_id: int, rows: int) -> int:
    """An orders file of the landing contract with `rows` orders numbered from `first_id`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("order_id,customer_id,ordered_at,amount,channel\n")
        out.writelines(f"{i},{i % 5000},2026-03-01T10:{i % 60:02d}:00+00:00,{i % 997}.5,web\n"
                       for i in range(first_id, first_id + rows))
    return rows


def _mlscale(env: dict, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlscale.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def private_cluster():
    """A PostgreSQL cluster of this test's own (initdb from the installed binaries, else pgserver's), so the test
    may restart it; yields (settings on it, restart). Not pytest's tmp_path: the server runs as a non-root user."""
    with server_folder("mlscale-restart-") as folder:
        data, bindir, port = folder / "pgdata", postgres.find_bindir(), free_port()
        dsn = postgres.start_private_cluster(data, port, bindir)

        def restart() -> None:
            postgres.stop_private_cluster(data, bindir)
            postgres.start_private_cluster(data, port, bindir)

        settings = Settings.from_env({**os.environ, "MLSCALE_PG_DSN": dsn,
                                      "MLSCALE_LANDING_DIR": str(folder / "landing")})
        try:
            with postgres.server(settings, autocommit=True) as conn:
                conn.execute(f'create database "{settings.warehouse_db}"')
            yield settings, restart
        finally:
            postgres.stop_private_cluster(data, bindir)


def test_a_postgresql_restart_in_the_middle_of_a_copy_loses_nothing_and_the_retry_loads_everything(private_cluster):
    settings, restart = private_cluster
    orders = settings.landing_dir / "orders"
    rows = {"2026-03-01": _orders(orders / "dt=2026-03-01" / "orders.csv", 1, 1_000),
            "2026-03-02": _orders(orders / "dt=2026-03-02" / "orders.csv", 10_000, 1_500_000),  # a few seconds of COPY
            "2026-03-03": _orders(orders / "dt=2026-03-03" / "orders.csv", 2_000_000, 1_000)}
    env = {**os.environ, "MLSCALE_PG_DSN": settings.pg_dsn, "MLSCALE_LANDING_DIR": str(settings.landing_dir)}
    ingest = _mlscale(env, "ingest")

    def copying_the_big_file() -> bool:
        assert ingest.poll() is None, ingest.communicate()
        try:
            with postgres.warehouse(settings) as conn:
                return conn.execute("select (select count(*) from pg_stat_activity where state = 'active' and query"
                                    " ilike 'copy raw.%orders%'), (select count(*) from ops.ingest_files)"
                                    ).fetchone() == (1, 1)
        except psycopg.errors.UndefinedTable:  # the ingest creates the ledger first
            return False

    _wait_for(copying_the_big_file, 120, "the second file's COPY")
    time.sleep(1.0)  # well inside the COPY
    restart()
    _, err = ingest.communicate(timeout=120)
    assert ingest.returncode == 1, err
    assert err.splitlines()[-1].startswith(  # the message names the file and what to do
        f"mlscale ingest: IngestInterrupted: the connection to PostgreSQL was lost while loading "
        f"{orders / 'dt=2026-03-02' / 'orders.csv'} ("), err
    assert err.splitlines()[-1].endswith("none of that file's rows were kept, the files before it stay loaded; run "
                                         "the ingest again once the server answers"), err

    with postgres.warehouse(settings) as conn:  # the first file's transaction committed; the second left nothing
        assert conn.execute("select count(*) from raw.orders").fetchone()[0] == rows["2026-03-01"]
        assert conn.execute("select path like '%dt=2026-03-01%', status from ops.ingest_files").fetchall() == \
            [(True, "loaded")]
        assert conn.execute("select count(*) from ops.quarantine").fetchone()[0] == 0

    with Stopwatch() as retry:
        out = _mlscale(env, "ingest")
        stdout, err = out.communicate(timeout=300)
    assert out.returncode == 0, err
    with postgres.warehouse(settings) as conn:
        assert conn.execute("select count(*), count(distinct order_id) from raw.orders").fetchone() == \
            (sum(rows.values()), sum(rows.values()))
        assert conn.execute("select sum(rows_loaded), count(*) from ops.ingest_files where status = 'loaded'"
                            ).fetchone() == (sum(rows.values()), 3)
    print(f"\nPostgreSQL restarted mid-COPY: rows lost 0, partial rows 0; retry loaded "
          f"{sum(rows.values()) - rows['2026-03-01']:,} rows in {retry.seconds:.1f} s")


def _tables(settings) -> dict[str, str]:
    """Checksum of every table dbt builds (intermediate, core, ml; staging is views over raw)."""
    names = query(settings, "select table_schema || '.' || table_name as name from information_schema.tables"
                            " where table_type = 'BASE TABLE' and table_schema in ('intermediate', 'core', 'ml')"
                            " order by 1")["name"]
    return {name: checksum(settings, name) for name in names}


def test_a_sigkill_in_the_middle_of_a_dbt_build_leaves_every_table_old_or_new_and_the_retry_succeeds(warehouse,
                                                                                                       tmp_path):
    airflow_shop(warehouse, tmp_path / "shop")  # the e2e shop, a copy of the run's template
    generate(dataclasses.replace(AIRFLOW_SHOP, days=AIRFLOW_SHOP.days + 1), warehouse.landing_dir,
             days=range(AIRFLOW_SHOP.days, AIRFLOW_SHOP.days + 1))  # one more day arrives
    loaded = ingest_landing(warehouse.dsn(warehouse.warehouse_db), warehouse.landing_dir)
    new_files = sum(feed["files_loaded"] for feed in loaded.values())
    before = _tables(warehouse)
    # The process that runs warehouse_etl's steps (claim, raw gate, dbt build, feature gate, publish) with its dbt
    # child, its sessions' statements bounded at 30 s; killed as Airflow kills a task: SIGKILL to its group.
    env = {**os.environ, "MLSCALE_PG_STATEMENT_TIMEOUT": "30"}
    etl = _mlscale(env, "etl")

    def building_the_features() -> bool:
        assert etl.poll() is None, etl.communicate()
        with postgres.warehouse(warehouse) as conn:
            # the build of a part of customer_features (its upstream tables are done by then): the incremental
            # model's temporary table; a bare name would also match other models' SQL that mentions the mart
            # (this database's: other test workers build theirs on the same server at the same time)
            return conn.execute("select count(*) from pg_stat_activity where application_name = 'dbt' and"
                                " datname = current_database() and state = 'active'"
                                " and query ilike '%customer_features_part_%dbt_tmp%'").fetchone()[0] > 0

    _wait_for(building_the_features, 300, "dbt to build customer_features")
    os.killpg(etl.pid, signal.SIGKILL)
    etl.wait(timeout=30)
    with Stopwatch() as gone:
        def dbt_sessions() -> int:
            with postgres.warehouse(warehouse) as conn:
                return conn.execute("select count(*) from pg_stat_activity where application_name = 'dbt'"
                                    " and datname = current_database()").fetchone()[0]
        _wait_for(lambda: dbt_sessions() == 0, 35, "the killed build's sessions to end")
    killed = _tables(warehouse)
    with postgres.warehouse(warehouse) as conn:
        leftovers = conn.execute("select count(*) from information_schema.tables where table_name like '%%__dbt_%%'"
                                 ).fetchone()[0]
        # the killed run's files stay claimed, not published: the next run claims them again
        assert conn.execute("select count(*) from ops.ingest_files where etl_status = 'claimed'").fetchone()[0] == \
            new_files > 0

    retry = _mlscale(env, "etl")
    _, err = retry.communicate(timeout=600)
    assert retry.returncode == 0, err
    after = _tables(warehouse)
    assert leftovers == 0  # no __dbt_tmp or __dbt_backup relation of the killed build
    assert set(killed) == set(before) == set(after)
    assert all(killed[t] in (before[t], after[t]) for t in killed), \
        [t for t in killed if killed[t] not in (before[t], after[t])]
    # The part being built was killed: it is as before (the other may have committed first: the view of the two is
    # then half new until the retry, which no reader sees as the run's result: the feature asset waits for it).
    parts = [t for t in killed if t.startswith("ml.customer_features_part_")]
    assert len(parts) == 2 and any(killed[t] == before[t] != after[t] for t in parts)
    rebuilt = [t for t in killed if killed[t] == after[t] != before[t]]
    assert rebuilt, "the kill came before any table was rebuilt"  # it was in the middle of the build
    assert scalar(warehouse, "select count(*) from ops.ingest_files where etl_status is distinct from 'published'"
                             " and status = 'loaded'") == 0
    print(f"\nSIGKILL mid dbt build: {len(rebuilt)} of {len(killed)} tables new, the rest old, none half-built; "
          f"the killed build's sessions ended {gone.seconds:.1f} s after the kill; retry succeeded")


def _restart_mlflow(settings) -> float:
    """Stop this worker's MLflow server (SIGTERM to its process group) and start it again on the same store;
    return the seconds it did not answer."""
    with Stopwatch() as down:
        services.stop_background(settings, f"mlflow{settings.db_suffix}")
        services.ensure_mlflow(settings)
    return down.seconds


def _until_done_or_retried(env: dict, *args: str) -> list[int]:
    """Exit codes of `mlscale args` run again after a failure (as Airflow retries a task), until it succeeds."""
    codes = []
    while not codes or codes[-1] != 0:
        assert len(codes) < 3, codes
        proc = _mlscale(env, *args)
        _, err = proc.communicate(timeout=900)
        codes.append(proc.returncode)
        print(f"\nmlscale {' '.join(args)}: exit {proc.returncode}; {err.strip().splitlines()[-1] if err.strip() else ''}")
    return codes


def test_an_mlflow_restart_during_training_and_promotion_is_retried_and_leaves_the_registry_consistent(
        warehouse, tmp_path, spec_variant):
    airflow_shop(warehouse, tmp_path / "shop")
    drop_registered_model(warehouse, MODEL)
    spec_variant(MODEL, one_configuration)  # the shipped spec, no search
    client = registry.client(warehouse)
    env = dict(os.environ)

    # Training: MLflow goes away once the training run is open, while it logs.
    train = _mlscale(env, "train", MODEL)
    def training_runs() -> bool:
        assert train.poll() is None, train.communicate()
        experiment = client.get_experiment_by_name(MODEL)
        return experiment is not None and bool(client.search_runs([experiment.experiment_id],
                                                                   "attributes.status = 'RUNNING'"))
    _wait_for(training_runs, 600, "the training run")
    down_training = _restart_mlflow(warehouse)
    _, err = train.communicate(timeout=900)
    codes_training = [train.returncode] + (_until_done_or_retried(env, "train", MODEL) if train.returncode else [])
    versions = registry.registry_state(warehouse, MODEL)
    candidate = versions[0]["version"]  # newest first
    artifacts.fetch_verified(warehouse, MODEL, candidate)  # its files are there and match the recorded hash
    for older in versions[1:]:  # a version an interrupted try registered before recording its hash is never used
        with pytest.raises(artifacts.TamperedArtifact, match="has no recorded hash"):
            artifacts.fetch_verified(warehouse, MODEL, older["version"])

    # Promotion: MLflow goes away once the candidate is in Staging, while the gates run and the aliases move.
    promote = _mlscale(env, "promote", MODEL, "--version", candidate, "--approved-by", "reliability-test")
    def staged() -> bool:
        assert promote.poll() is None, promote.communicate()
        return client.get_model_version(MODEL, candidate).current_stage == "Staging"
    _wait_for(staged, 600, "the candidate in Staging")
    down_promotion = _restart_mlflow(warehouse)
    _, err = promote.communicate(timeout=900)
    codes_promotion = [promote.returncode] + (
        _until_done_or_retried(env, "promote", MODEL, "--version", candidate, "--approved-by", "reliability-test")
        if promote.returncode else [])

    state = registry.registry_state(warehouse, MODEL)
    in_production = [v for v in state if v["stage"] == "Production"]
    assert in_production == [{"version": candidate, "stage": "Production", "aliases": ["production"]}], state
    assert [v["version"] for v in state if "production" in v["aliases"]] == [candidate]
    assert scalar(warehouse, "select count(*) from ops.model_promotions where model = %s and to_version = %s and"
                             " decision = 'promoted'", MODEL, candidate) == 1
    print(f"\nMLflow restarted during training (down {down_training:.1f} s): exits {codes_training}; during promotion "
          f"(down {down_promotion:.1f} s): exits {codes_promotion}; versions without verified artifacts used: 0; "
          f"registry consistent")
