"""The repository served as an Airflow 3 GitDagBundle from a local git repository: each DAG run records the commit."""

import json
import subprocess
from pathlib import Path

import pytest

from mlscale import postgres
from mlscale.local import services
from tests.helpers import copy_database

pytestmark = pytest.mark.integration
DAG = "business_report"
ROOT = Path(__file__).resolve().parents[2]


def _git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _airflow(env, *args: str) -> str:
    done = subprocess.run([str(services.BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_each_dag_run_records_the_commit_of_the_bundle_it_was_created_from(stack, tmp_path):
    repo = tmp_path / "origin"
    _git(tmp_path, "clone", "--quiet", "--no-checkout", str(ROOT), str(repo))
    _git(repo, "checkout", "--quiet", "-B", "main", _git(ROOT, "rev-parse", "HEAD"))  # this checkout's commit
    first = _git(repo, "rev-parse", "HEAD")
    metadata = f"{stack.airflow_db}_gitbundle"
    copy_database(stack, stack.airflow_db, metadata)  # migrated already; the other tests' DB stays as it is
    # The configuration README gives (*Versioned bundle*), pointed at the local repository.
    bundles = [{"name": "mlscale", "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
                "kwargs": {"repo_url": str(repo), "tracking_ref": "main", "subdir": "dags"}}]
    env = {**stack.service_env(), "PATH": f"{services.BIN}:/usr/bin:/bin",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": stack.sqlalchemy_url(metadata),
           "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
           "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(tmp_path / "bundles"),
           # Airflow skips rewriting a DAG serialized less than 30 s ago; this test commits sooner than that
           "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0"}
    try:
        _airflow(env, "dags", "reserialize", "--bundle-name", "mlscale")
        _airflow(env, "dags", "trigger", DAG, "--run-id", "on_first")

        dag_file = repo / "dags" / f"{DAG}.py"
        dag_file.write_text(dag_file.read_text().replace('"""', '"""(a new commit) ', 1))  # its doc_md
        _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-am", "a change to the DAG")
        second = _git(repo, "rev-parse", "HEAD")
        _airflow(env, "dags", "reserialize", "--bundle-name", "mlscale")
        _airflow(env, "dags", "trigger", DAG, "--run-id", "on_second")

        with postgres.database(stack, metadata) as conn:
            runs = dict(conn.execute(  # only this test's: the copied DB may hold other tests' runs
                "select run_id, bundle_version from dag_run where dag_id = %s and run_id in ('on_first', 'on_second')",
                (DAG,)).fetchall())
            dags = {dag_id: (name, version) for dag_id, name, version in conn.execute(
                "select dag_id, bundle_name, bundle_version from dag")}
            docs = [doc for (doc,) in conn.execute(
                "select data->'dag'->>'doc_md' from serialized_dag s join dag_version v on v.id = s.dag_version_id"
                " where s.dag_id = %s and v.bundle_name = 'mlscale' order by v.version_number", (DAG,))]
    finally:
        with postgres.server(stack, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{metadata}" with (force)')

    assert first != second
    assert runs == {"on_first": first, "on_second": second}
    # the bundle's DAGs (the copied DB may also hold DAGs other tests made) at its newest commit
    assert dags[DAG] == ("mlscale", second) and {v for b, v in dags.values() if b == "mlscale"} == {second}
    assert len(docs) == 2 and "(a new commit)" in docs[1] and "(a new commit)" not in docs[0]
