"""The compose stack's credentials, run here without containers (RELIABILITY.md): `docker/postgres-init.sh`
against a real PostgreSQL server gives each service a role with rights on its own database only and the page a
read-only role; `docker/mlflow-server.sh` runs MLflow behind its basic-auth app on that MLflow role, where only
the pipeline's account can move a registered model's alias or stage and a person with READ is refused."""

import dataclasses
import os
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
import pytest
import requests
from mlflow.exceptions import MlflowException

from mlscale import ops, postgres, registry
from mlscale.deployment import ensure_mlflow_account
from mlscale.local import services
from tests.helpers import port
from tests.reliability.conftest import register_tiny_version

pytestmark = pytest.mark.reliability
ROOT = Path(__file__).resolve().parents[2]
MODEL = "deploy_access"
SERVICES = ("warehouse", "airflow", "mlflow")
ADMIN = ("admin", "an-admin-password-for-tests")  # pragma: allowlist secret
PIPELINE = ("pipeline", "a-pipeline-password-for-tests")  # pragma: allowlist secret
PERSON = ("analyst", "an-analyst-password-for-tests")  # pragma: allowlist secret
ROLE_PASSWORD = "a-role-password"  # pragma: allowlist secret (the test server trusts local users: not checked)


@dataclasses.dataclass
class Roles:
    """The databases and roles one run of the init script made, and settings that connect as each role."""
    suffix: str
    names: dict[str, str]  # WAREHOUSE_USER, ... -> role name

    def settings(self, stack, user: str, **changes):
        """The stack's settings, on the roles' databases (suffix), connecting as the role `user`."""
        params = stack.conn_params("postgres")
        dsn = make_conninfo(host=params["host"], port=params["port"], user=self.names[user], password=ROLE_PASSWORD,
                            dbname="postgres")
        return dataclasses.replace(stack, pg_dsn_override=dsn, db_suffix=self.suffix, **changes)


@pytest.fixture(scope="module")
def roles(stack):
    """Run docker/postgres-init.sh as the container would on its first start, with names of this worker's own."""
    suffix = f"{stack.db_suffix}_roles"
    names = {key: f"mlscale_{key.split('_')[0].lower()}{'_reader' if 'READER' in key else ''}{suffix}"
             for key in ("WAREHOUSE_USER", "WAREHOUSE_READER_USER", "AIRFLOW_DB_USER", "MLFLOW_DB_USER")}
    params = stack.conn_params("postgres")
    env = {**os.environ, "PGHOST": params["host"], "PGPORT": params["port"], "POSTGRES_USER": params["user"],
           "POSTGRES_DB": "postgres", **names, **{f"{s.upper()}_DB": f"{s}{suffix}" for s in SERVICES},
           **{key.replace("_USER", "_PASSWORD"): ROLE_PASSWORD for key in names}}
    _drop(stack, suffix, names)
    out = subprocess.run(["bash", str(ROOT / "docker" / "postgres-init.sh")], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    yield Roles(suffix, names)
    _drop(stack, suffix, names)


def _drop(stack, suffix: str, names: dict[str, str]) -> None:
    with postgres.server(stack, autocommit=True) as conn:
        for service in SERVICES:
            conn.execute(f'drop database if exists "{service}{suffix}" with (force)')
        for role in names.values():
            conn.execute(f'drop role if exists "{role}"')


def _connects(settings, dbname: str) -> bool:
    try:
        with postgres.connect(settings.dsn(dbname), settings):
            return True
    except psycopg.OperationalError as exc:
        assert "permission denied for database" in str(exc), exc
        return False


def test_each_service_role_reaches_only_its_own_database(stack, roles):
    reach = {user: {service for service in SERVICES if _connects(roles.settings(stack, user), f"{service}{roles.suffix}")}
             for user in roles.names}
    assert reach == {"WAREHOUSE_USER": {"warehouse"}, "WAREHOUSE_READER_USER": {"warehouse"},
                     "AIRFLOW_DB_USER": {"airflow"}, "MLFLOW_DB_USER": {"mlflow"}}


def test_the_reader_role_reads_what_the_warehouse_role_builds_and_changes_nothing(stack, roles):
    writer, reader = roles.settings(stack, "WAREHOUSE_USER"), roles.settings(stack, "WAREHOUSE_READER_USER")
    with postgres.warehouse(writer) as conn:  # as ingest, dbt and promotion do: schemas and tables of its own
        ops.ensure(conn, "model_promotions")
        conn.execute("insert into ops.model_promotions (model, to_version, stage, decision, candidate_metrics,"
                     " production_metrics, gates, reason, decided_by) values ('m', '1', 'Production', 'promoted',"
                     " '{}', '{}', '{}', 'test', 'test')")
    with postgres.warehouse(reader) as conn:
        assert ops.promotions(conn)["to_version"].tolist() == ["1"]  # what the ML models page reads
    refused = {}
    for statement in ("insert into ops.model_promotions (model, to_version, stage, decision, candidate_metrics,"
                      " production_metrics, gates, reason, decided_by) values ('m', '2', 'Production', 'promoted',"
                      " '{}', '{}', '{}', 'x', 'x')", "delete from ops.model_promotions", "create schema mine",
                      "create table ops.mine (x int)", "drop table ops.model_promotions"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as exc, postgres.warehouse(reader) as conn:
            conn.execute(statement)
        refused[statement.split(" (")[0]] = exc.value.sqlstate
    assert len(refused) == 5
    with postgres.warehouse(writer) as conn:
        assert conn.execute("select count(*) from ops.model_promotions").fetchone()[0] == 1


@pytest.fixture(scope="module")
def mlflow_auth(stack, roles, tmp_path_factory):
    """docker/mlflow-server.sh (MLflow's basic-auth app) on the roles' MLflow database, as the MLflow role;
    the pipeline's and a person's accounts created as the admin, as `mlscale mlflow-account` does."""
    folder = tmp_path_factory.mktemp("mlflow-auth")
    mlflow_port = port(5170)
    backend = roles.settings(stack, "MLFLOW_DB_USER").sqlalchemy_url(f"mlflow{roles.suffix}")
    env = {**os.environ, "PATH": f"{services.BIN}:{os.environ['PATH']}", "MLFLOW_BACKEND_STORE_URI": backend,
           "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0], "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-secret-key-for-tests",  # pragma: allowlist secret
           "MLFLOW_ARTIFACTS_DESTINATION": str(folder / "artifacts"), "MLFLOW_HOST": "127.0.0.1",
           "MLFLOW_PORT": str(mlflow_port), "MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini")}
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    name = f"mlflow-auth{stack.db_suffix}"
    services.start_background(stack, name, ["bash", str(ROOT / "docker" / "mlflow-server.sh")], env)
    uri = f"http://127.0.0.1:{mlflow_port}"
    try:
        services.wait_until_up(stack, name, f"{uri}/health", timeout=180)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
            mp.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
            created = [ensure_mlflow_account(uri, *account) for account in (PIPELINE, PERSON)]
            again = ensure_mlflow_account(uri, *PIPELINE)
        yield roles.settings(stack, "WAREHOUSE_USER", mlflow_host="127.0.0.1", mlflow_port=mlflow_port), created, again
    finally:
        services.stop_background(stack, name)


def _as(monkeypatch, account: tuple[str, str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", account[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", account[1])


def test_only_the_pipelines_account_moves_an_alias_a_person_with_read_is_refused(mlflow_auth, monkeypatch):
    settings, created, again = mlflow_auth
    assert (created, again) == (["created", "created"], "updated")
    assert requests.get(f"{settings.mlflow_uri}/api/2.0/mlflow/registered-models/search", timeout=30).status_code == 401

    _as(monkeypatch, PIPELINE)  # as the DAG tasks run: they register, record the hash, promote
    version = register_tiny_version(settings, MODEL)
    registry.client(settings).set_registered_model_alias(MODEL, "production", version)

    _as(monkeypatch, PERSON)  # someone with a login to MLflow's UI
    client = registry.client(settings)
    assert registry.alias_version(settings, MODEL, "production") == version  # READ: they see it
    attempts = {
        "set alias": lambda: client.set_registered_model_alias(MODEL, "production", version),
        "delete alias": lambda: client.delete_registered_model_alias(MODEL, "production"),
        "transition stage": lambda: client.transition_model_version_stage(MODEL, version, "Production"),
        "new version": lambda: client.create_model_version(MODEL, f"runs:/{registry.version_run_id(settings, MODEL, version)}/model"),
        "tag": lambda: client.set_model_version_tag(MODEL, version, "artifact_sha256", "0" * 64),
    }
    refused = {}
    for what, attempt in attempts.items():
        with pytest.raises(MlflowException) as exc:
            attempt()
        refused[what] = exc.value.error_code
    assert refused == dict.fromkeys(attempts, "PERMISSION_DENIED")

    _as(monkeypatch, PIPELINE)
    state = registry.registry_state(settings, MODEL)
    assert [(v["version"], v["stage"], v["aliases"]) for v in state] == [(version, "None", ["production"])]
    assert client.get_model_version(MODEL, version).tags["artifact_sha256"] != "0" * 64
