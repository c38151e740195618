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
    assert set(SERVICES) == {"postgres", "redis", "mlflow", "airflow-init", *AIRFLOW}


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
    created = set(re.findall(r"CREATE DATABASE (\w+);", (ROOT / "docker" / "postgres-init.sql").read_text()))
    s = Settings.from_env({})
    assert created == {s.warehouse_db, s.airflow_db, s.mlflow_db}


def test_workers_and_the_ui_share_the_reports_folder():
    """business_report writes the report on a worker; the ML models page on the api-server serves it."""
    for name in ("airflow-worker", "airflow-apiserver"):
        env = SERVICES[name]["environment"]
        assert f"reports:{env['MLSCALE_REPORTS_DIR']}" in SERVICES[name]["volumes"], name
