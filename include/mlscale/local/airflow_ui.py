"""`make up` / `make down`: Airflow's processes (api-server, scheduler, dag-processor, triggerer) and MLflow.

`make up EXECUTOR=celery`: the same processes with Airflow's CeleryExecutor, Redis as the broker (the one answering
at MLSCALE_CELERY_BROKER_URL, default 127.0.0.1:6379, else a private redis-server started from the installed
binary) and two Celery workers (`airflow celery worker`), each recording its own name as the task instances'
hostname.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from urllib.parse import urlsplit

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
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
CELERY_WORKERS = 2
WORKERS = [f"airflow-celery-worker-{i}" for i in range(1, CELERY_WORKERS + 1)]  # their names as services
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def ui_port() -> int:
    return int(os.environ.get("MLSCALE_AIRFLOW_PORT", "8080"))


def ui_env(settings: Settings, executor: str = "local") -> dict[str, str]:
    """Environment shared by the Airflow processes: one JWT secret, one execution API URL, the executor."""
    secret_file = settings.state_dir / "airflow_jwt_secret"
    if not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secrets.token_urlsafe(32))
        secret_file.chmod(0o600)
    port = ui_port()
    return {
        **os.environ,
        **settings.service_env(),
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[executor],
        "AIRFLOW__CORE__PARALLELISM": "4",
        **(celery_env(settings) if executor == "celery" else {}),
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


def broker_url() -> str:
    return os.environ.get("MLSCALE_CELERY_BROKER_URL", DEFAULT_BROKER)


def celery_env(settings: Settings) -> dict[str, str]:
    """The CeleryExecutor's settings: Redis as the broker, the Airflow database as Celery's result backend."""
    return {
        "AIRFLOW__CELERY__BROKER_URL": broker_url(),
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + settings.sqlalchemy_url(settings.airflow_db).replace(
            "postgresql+psycopg2", "postgresql"),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
    }


def ensure_broker(settings: Settings) -> None:
    """Use the Redis answering at the broker URL; else start redis-server (no persistence) at that address."""
    url = urlsplit(broker_url())
    host, port = url.hostname or "127.0.0.1", url.port or 6379
    if _answers(host, port):
        return
    server = shutil.which("redis-server")
    if server is None or host not in ("127.0.0.1", "localhost"):
        raise services.ServiceDown(f"no Redis answers at {host}:{port} (MLSCALE_CELERY_BROKER_URL) and none can be "
                                   "started here (redis-server not installed, or the address is not this machine)")
    services.start_background(settings, "redis", [server, "--bind", host, "--port", str(port), "--save", "",
                                                  "--appendonly", "no"], dict(os.environ))
    deadline = time.monotonic() + 30
    while not _answers(host, port):
        if time.monotonic() > deadline:
            raise services.ServiceDown(f"redis-server did not answer at {host}:{port} within 30 s; its log: "
                                       f"{settings.log_dir / 'redis.log'}")
        time.sleep(0.2)


def _answers(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) == 0


def unpause_bundle(env: dict[str, str]) -> None:
    """Unpause every DAG the metadata DB knows (the bundle's; Airflow's examples are off): those `make demo` ran
    were created paused, and a paused asset-driven chain never starts."""
    subprocess.run([str(services.BIN / "airflow"), "dags", "unpause", "--treat-dag-id-as-regex", "-y", ".*"],
                   env=env, capture_output=True, check=True)


def worker_processes(env: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Name -> (airflow arguments, environment) of each Celery worker: its own Celery name, hostname and log port."""
    log_port = int(env.get("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "8793"))
    return {name: (
        ["celery", "worker", "--celery-hostname", f"worker-{i}@%h", "--concurrency", "2"],
        {**env, "MLSCALE_WORKER_NAME": f"worker-{i}", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port + i),
         "AIRFLOW__CORE__HOSTNAME_CALLABLE": "mlscale.airflow.workers.hostname"})
        for i, name in enumerate(WORKERS, 1)}


def up(settings: Settings, executor: str = "local") -> None:
    """Set up the services, then start the Airflow processes (and the Celery workers) and wait for the UI."""
    from mlscale.local.setup import setup

    settings = setup(settings)
    env = ui_env(settings, executor)
    unpause_bundle(env)
    airflow = str(services.BIN / "airflow")
    processes = {name: ([a.format(port=ui_port()) for a in args], env) for name, args in AIRFLOW_PROCESSES.items()}
    if executor == "celery":
        ensure_broker(settings)
        processes.update(worker_processes(env))
    for name, (args, process_env) in processes.items():
        services.start_background(settings, name, [airflow, *args], process_env)
    url = f"http://127.0.0.1:{ui_port()}"
    timeout = float(os.environ.get("MLSCALE_UP_TIMEOUT", "180"))
    print(f"waiting for Airflow's api-server to answer at {url} (up to {timeout:.0f} s, MLSCALE_UP_TIMEOUT) ...")
    services.wait_until_up(settings, "airflow-api-server", f"{url}/api/v2/monitor/health", timeout)
    passwords = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI  {url}  (user {ADMIN_USER}, password in {passwords})")
    print(f"MLflow UI   {settings.mlflow_uri}")
    if executor == "celery":
        print(f"executor    CeleryExecutor, {CELERY_WORKERS} workers, broker {broker_url()}")
    print(f"logs        {settings.log_dir}")
    print("the bundle's DAGs are unpaused: the scheduler runs the chain as files land (pause one in the UI to stop it)")


def stop_airflow(settings: Settings) -> None:
    """Stop the Airflow processes, the Celery workers and a Redis that `up` started."""
    for name in [*AIRFLOW_PROCESSES, *WORKERS, "redis"]:
        if services.stop_background(settings, name):
            print(f"stopped {name}")


def down(settings: Settings) -> None:
    """Stop the Airflow processes, the MLflow server and the private PostgreSQL cluster that these targets started."""
    stop_airflow(settings)
    if services.stop_background(settings, f"mlflow{settings.db_suffix}"):
        print(f"stopped mlflow{settings.db_suffix}")
    if settings.pg_dsn_file.exists() and (settings.state_dir / "pgdata").exists():
        postgres.stop_private_cluster(settings.state_dir / "pgdata")
        print("stopped the private PostgreSQL cluster")
