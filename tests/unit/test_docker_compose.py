"""docker-compose.yml is checked by parsing (no Docker engine runs here): services, health, secrets, volumes."""

import re
from pathlib import Path

import yaml

from mlscale.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"]


def test_every_piece_of_the_stack_is_a_service():
    assert set(SERVICES) == {"postgres", "redis", "mlflow", "mlflow-init", "airflow-init", *AIRFLOW}


def test_airflow_processes_share_secret_executor_and_execution_api():
    envs = [SERVICES[name]["environment"] for name in AIRFLOW]
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL"):
        assert len({env[key] for env in envs}) == 1, key
    assert envs[0]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert envs[0]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://airflow-apiserver:8080/")


def test_services_wait_for_healthy_dependencies():
    for name in ("postgres", "redis", "mlflow", "airflow-apiserver"):
        assert SERVICES[name]["healthcheck"]["test"], name
    for name in AIRFLOW:
        assert SERVICES[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert SERVICES["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_named_volumes_are_declared():
    used = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert used == set(COMPOSE["volumes"])
    for v in (s for svc in SERVICES.values() for s in svc.get("volumes", []) if s.startswith(".")):
        assert (ROOT / v.split(":")[0]).exists(), v


def test_secrets_come_from_env_file_and_are_documented():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    documented = {line.split("=")[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    assert used <= documented, used - documented
    # No literal password in any connection URL: user:${VAR}@host only.
    for userinfo in re.findall(r"://(\S+?)@", text):
        literal = re.sub(r"\$\{[^}]*\}", "", userinfo)
        assert literal.partition(":")[2] == "", userinfo


def test_databases_match_the_settings():
    created = set(re.findall(r'-v \w+_db="\$\{\w+:-(\w+)\}"', (ROOT / "docker" / "postgres-init.sh").read_text()))
    s = Settings.from_env({})
    assert created == {s.warehouse_db, s.airflow_db, s.mlflow_db}


def test_every_secret_is_required_and_has_no_default():
    """compose refuses to start while a secret is unset or empty: `${VAR:?message}` at one use at least, and no
    use falls back to a default (`${VAR:-...}`)."""
    text = (ROOT / "docker-compose.yml").read_text()
    secrets = {v for v in re.findall(r"\$\{([A-Z_]+)", text) if re.search(r"PASSWORD|SECRET|FERNET", v)}
    assert {"POSTGRES_PASSWORD", "WAREHOUSE_PASSWORD", "WAREHOUSE_READER_PASSWORD", "AIRFLOW_DB_PASSWORD",
            "MLFLOW_DB_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_PASSWORDS",
            "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY", "MLFLOW_PIPELINE_PASSWORD", "MLFLOW_READER_PASSWORD"} <= secrets
    for name in secrets:
        assert f"${{{name}:?" in text, name
        assert f"${{{name}:-" not in text, name
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert {name: example[name] for name in secrets} == dict.fromkeys(secrets, "")  # nothing to copy and forget


def test_each_service_reaches_postgresql_as_its_own_role():
    """Only the postgres container knows the superuser; Airflow, MLflow and the warehouse users are their own
    roles (docker/postgres-init.sh creates them from the same variables); the api-server reads as the reader."""
    assert all("POSTGRES_" not in str(svc.get("environment", {})) for name, svc in SERVICES.items() if name != "postgres")
    init = (ROOT / "docker" / "postgres-init.sh").read_text()
    for variable in re.findall(r'"\$\{(\w+):\?\}"', init):
        assert variable in SERVICES["postgres"]["environment"], variable
    worker, ui = SERVICES["airflow-worker"]["environment"], SERVICES["airflow-apiserver"]["environment"]
    assert "${AIRFLOW_DB_USER:-" in worker["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "${MLFLOW_DB_USER:-" in SERVICES["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert worker["MLSCALE_PG_DSN"].startswith("postgresql://${WAREHOUSE_USER:-")
    assert ui["MLSCALE_PG_DSN"].startswith("postgresql://${WAREHOUSE_READER_USER:-")
    assert ui["MLFLOW_TRACKING_USERNAME"].startswith("${MLFLOW_READER_USER:-")
    assert worker["MLFLOW_TRACKING_USERNAME"].startswith("${MLFLOW_PIPELINE_USER:-")


def test_mlflow_runs_behind_its_auth_app_and_the_uis_are_published_on_loopback():
    assert SERVICES["mlflow"]["command"] == ["/opt/mlscale/docker/mlflow-server.sh"]
    assert "--app-name basic-auth" in (ROOT / "docker" / "mlflow-server.sh").read_text()
    assert "COPY docker ./docker" in (ROOT / "Dockerfile").read_text()
    assert SERVICES["airflow-worker"]["depends_on"]["mlflow-init"]["condition"] == "service_completed_successfully"
    for name in ("mlflow", "airflow-apiserver"):
        (published,) = SERVICES[name]["ports"]
        assert published.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:"), name
    assert [s for s, svc in SERVICES.items() if "ports" in svc] == ["mlflow", "airflow-apiserver"]


def test_airflow_refuses_to_start_with_weak_secrets_and_sets_every_password():
    assert SERVICES["airflow-init"]["command"][-1].startswith("mlscale deploy-check && ")
    assert SERVICES["airflow-apiserver"]["command"][-1].startswith("mlscale airflow-passwords && exec airflow api-server")
    env = SERVICES["airflow-apiserver"]["environment"]
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].startswith("${AIRFLOW_USERS:?")
    assert "admin:admin" not in (ROOT / "docker-compose.yml").read_text()


def test_workers_and_the_ui_share_the_reports_folder():
    """business_report writes the report on a worker; the ML models page on the api-server serves it."""
    for name in ("airflow-worker", "airflow-apiserver"):
        env = SERVICES[name]["environment"]
        assert f"reports:{env['MLSCALE_REPORTS_DIR']}" in SERVICES[name]["volumes"], name
