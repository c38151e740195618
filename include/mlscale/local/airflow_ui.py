"""`make up` / `make down`: Airflow's processes (api-server, scheduler, dag-processor, triggerer) and MLflow."""

from __future__ import annotations

import os
import secrets
import subprocess

from mlscale import postgres
from mlscale.local import services
from mlscale.config import Settings

AIRFLOW_PROCESSES = {
    "airflow-api-server": ["api-server", "--port", "{port}"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
}
ADMIN_USER = "admin"


def ui_port() -> int:
    return int(os.environ.get("MLSCALE_AIRFLOW_PORT", "8080"))


def ui_env(settings: Settings) -> dict[str, str]:
    """Environment shared by the Airflow processes: one JWT secret, one execution API URL, LocalExecutor."""
    secret_file = settings.state_dir / "airflow_jwt_secret"
    if not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    port = ui_port()
    return {
        **os.environ,
        **settings.service_env(),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text().strip(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        # loopback unless told otherwise: the UI is for this machine (its login is a development default)
        "AIRFLOW__API__HOST": os.environ.get("MLSCALE_AIRFLOW_HOST", "127.0.0.1"),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        # user:role pairs (roles: viewer, user, op, admin); passwords are generated into the Airflow home
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": os.environ.get("MLSCALE_AIRFLOW_USERS", f"{ADMIN_USER}:admin"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # The development stack runs the chain by itself: a DAG the dag-processor finds is created unpaused (the
        # compose stack keeps Airflow's default, paused, until the operator opts in).
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }


def unpause_bundle(env: dict[str, str]) -> None:
    """Unpause every DAG the metadata DB knows (the bundle's; Airflow's examples are off): those `make demo` ran
    were created paused, and a paused asset-driven chain never starts."""
    subprocess.run([str(services.BIN / "airflow"), "dags", "unpause", "--treat-dag-id-as-regex", "-y", ".*"],
                   env=env, capture_output=True, check=True)


def up(settings: Settings) -> None:
    """Set up the services, then start the Airflow processes and wait for the UI to answer."""
    from mlscale.local.setup import setup

    settings = setup(settings)
    env = ui_env(settings)
    unpause_bundle(env)
    airflow = str(services.BIN / "airflow")
    for name, args in AIRFLOW_PROCESSES.items():
        services.start_background(settings, name, [airflow, *[a.format(port=ui_port()) for a in args]], env)
    url = f"http://127.0.0.1:{ui_port()}"
    timeout = float(os.environ.get("MLSCALE_UP_TIMEOUT", "180"))
    print(f"waiting for Airflow's api-server to answer at {url} (up to {timeout:.0f} s, MLSCALE_UP_TIMEOUT) ...")
    services.wait_until_up(settings, "airflow-api-server", f"{url}/api/v2/monitor/health", timeout)
    passwords = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI  {url}  (user {ADMIN_USER}, password in {passwords})")
    print(f"MLflow UI   {settings.mlflow_uri}")
    print(f"logs        {settings.log_dir}")
    print("the bundle's DAGs are unpaused: the scheduler runs the chain as files land (pause one in the UI to stop it)")


def down(settings: Settings) -> None:
    """Stop the Airflow processes, the MLflow server and the private PostgreSQL cluster that these targets started."""
    for name in [*AIRFLOW_PROCESSES, f"mlflow{settings.db_suffix}"]:
        if services.stop_background(settings, name):
            print(f"stopped {name}")
    if settings.pg_dsn_file.exists() and (settings.state_dir / "pgdata").exists():
        postgres.stop_private_cluster(settings.state_dir / "pgdata")
        print("stopped the private PostgreSQL cluster")
