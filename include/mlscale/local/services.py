"""Start, find and stop the local services: the MLflow tracking server and Airflow's processes."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlscale.config import Settings

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except OSError:
        return False


def _pid_alive(pid_file: Path) -> int | None:
    """The pid in `pid_file` while that process runs (a child of this process that exited is reaped), else None."""
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip())
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return None
        except ChildProcessError:
            pass  # not a child of this process
        os.kill(pid, 0)
        return pid
    except (ValueError, ProcessLookupError, PermissionError):
        return None


def start_background(settings: Settings, name: str, cmd: list[str], env: dict[str, str]) -> int:
    """Start `cmd` detached, with its pid in <state>/run/<name>.pid and its log in <state>/log/<name>.log."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    pid_file = settings.run_dir / f"{name}.pid"
    if (pid := _pid_alive(pid_file)) is not None:
        log.info("%s already runs (pid %d)", name, pid)
        return pid
    logfile = open(settings.log_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=settings.root, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    log.info("started %s (pid %d), log %s", name, proc.pid, settings.log_dir / f"{name}.log")
    return proc.pid


def stop_background(settings: Settings, name: str, timeout: float = 20) -> bool:
    """Stop a process group that `start_background` started; True when one was running."""
    pid_file = settings.run_dir / f"{name}.pid"
    pid = _pid_alive(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reap it when this process started it: a zombie counts
            os.waitpid(pid, os.WNOHANG)                # as a member of the group until then
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        log.warning("%s (pid %d) did not stop within %.0f s of SIGTERM: killed", name, pid, timeout)
        os.killpg(pid, signal.SIGKILL)
    log.info("stopped %s (pid %d)", name, pid)
    return True


class ServiceDown(RuntimeError):
    """A service this process started exited, or did not answer in time; the message ends with its log."""


def wait_until_up(settings: Settings, name: str, url: str, timeout: float) -> None:
    """Wait until `url` answers for the service `start_background` started as `name`; raise ServiceDown with the
    last lines of its log when it exits first or does not answer within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not http_ok(url):
        if _pid_alive(settings.run_dir / f"{name}.pid") is None:
            why = "exited before it answered"
            break
        if time.monotonic() > deadline:
            why = f"did not answer within {timeout:.0f} s"
            break
        time.sleep(1)
    else:
        return
    log_file = settings.log_dir / f"{name}.log"
    tail = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
    raise ServiceDown(f"{name} {why} at {url}; the last lines of its log ({log_file}):\n{tail}")


def ensure_mlflow(settings: Settings, timeout: float = 120) -> str:
    """Re-use the MLflow server answering at the configured port, else start one; return its URI."""
    uri = settings.mlflow_uri
    if http_ok(f"{uri}/health"):
        return uri
    settings.mlflow_artifacts_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", settings.sqlalchemy_url(settings.mlflow_db),
        "--artifacts-destination", str(settings.mlflow_artifacts_dir),
        "--host", settings.mlflow_host, "--port", str(settings.mlflow_port),
        "--workers", "1",
    ]
    # MLflow's job runner (huey consumers, for GenAI judges and trace rollups) starts with the server unless told
    # not to; the bundle runs no MLflow jobs. An operator's MLFLOW_SERVER_ENABLE_JOB_EXECUTION wins.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ, **settings.service_env()}
    name = f"mlflow{settings.db_suffix}"
    start_background(settings, name, cmd, env)
    wait_until_up(settings, name, f"{uri}/health", timeout)
    return uri


@contextlib.contextmanager
def mlflow_while(settings: Settings):
    """`ensure_mlflow` for the length of a `with` block: a server this started stops at its end, one that was
    already answering keeps running (the benches use it, so they leave nothing running)."""
    started = not http_ok(f"{settings.mlflow_uri}/health")
    uri = ensure_mlflow(settings)
    try:
        yield uri
    finally:
        if started:
            stop_background(settings, f"mlflow{settings.db_suffix}")


def migrate_airflow_db(settings: Settings) -> None:
    """`airflow db migrate` against the PostgreSQL metadata DB (creates or upgrades)."""
    env = {**os.environ, **settings.service_env()}
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def build_dbt_manifest(settings: Settings) -> Path:
    """`dbt parse`: writes target/manifest.json, which Cosmos renders the DAG from (no dbt at parse time).

    dbt writes into a folder of its own first; the manifest (and the partial-parse file Cosmos starts from)
    then replace the old ones by rename, so a DAG processor or test worker parsing the bundle meanwhile
    reads the old file or the new one, never half of one. The folder starts with a copy of the last parse, so dbt
    parses only what changed since (it parses everything when that parse was made for other vars or connection)."""
    from mlscale.data.warehouse import dbt

    target = settings.dbt_manifest.parent
    staging = target / f".parse-{os.getpid()}"
    try:
        if (target / "partial_parse.msgpack").exists():
            staging.mkdir(parents=True, exist_ok=True)
            shutil.copy2(target / "partial_parse.msgpack", staging / "partial_parse.msgpack")
        dbt(settings, "parse", "--target-path", str(staging))
        for name in ("partial_parse.msgpack", "manifest.json"):  # the manifest last: it is what readers look for
            if (staging / name).exists():
                os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return settings.dbt_manifest
