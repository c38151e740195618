"""docker-compose.yml is checked by parsing (no Docker engine runs here): services, health, secrets, volumes."""

import json
import os
import re
import shlex
import subprocess
import sys
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


# --- what can be checked of the image without an engine ------------------------------------------------------
DOCKERFILE = (ROOT / "Dockerfile").read_text()
IMAGE = [name for name, svc in SERVICES.items() if svc.get("image") == "mlscale:latest"]
WORKDIR = re.search(r"^WORKDIR (\S+)", DOCKERFILE, re.M).group(1)
DOCKERFILE_ENV = dict(re.findall(r"^\s*(?:ENV\s+)?([A-Z][A-Z0-9_]+)=(\S+?)\s*\\?$", DOCKERFILE, re.M))


def _steps(service: str) -> list[list[str]]:
    """The programs a service runs: its command, or each `&&` step of a `bash -c` one."""
    command = SERVICES[service]["command"]
    if command[:2] == ["bash", "-c"]:
        return [shlex.split(step.strip().removeprefix("exec ")) for step in command[2].split("&&")]
    return [command]


def _port(url: str) -> str:
    return re.search(r"://[^/]*?:(\d+)", url).group(1)


def test_every_service_command_exists_in_the_image():
    """Each program a container runs is in the image: the mlscale CLI's subcommands, Airflow's commands (its own
    parser, CeleryExecutor configured, so `celery worker` is there), and the image's scripts (executable)."""
    steps = [step for name in IMAGE for step in _steps(name)]
    assert {s[0] for s in steps} == {"mlscale", "airflow", f"{WORKDIR}/docker/mlflow-server.sh"}
    usage = subprocess.run([sys.executable, "-m", "mlscale.cli", "--help"], capture_output=True, text=True, check=True)
    subcommands = re.search(r"\{([a-z,-]+)\}", usage.stdout).group(1).split(",")
    for step in steps:
        if step[0] == "mlscale":
            assert step[1:] and step[1] in subcommands, step
        elif step[0].startswith(WORKDIR):
            script = ROOT / Path(step[0]).relative_to(WORKDIR)
            assert script.is_file() and os.access(script, os.X_OK), step
            assert f"COPY {script.parent.relative_to(ROOT)} ./{script.parent.relative_to(ROOT)}" in DOCKERFILE
    airflow = [step[1:] for step in steps if step[0] == "airflow"]
    assert ["celery", "worker"] in airflow and ["db", "migrate"] in airflow
    check = ("import json, sys\nfrom airflow.cli import cli_parser\nparser = cli_parser.get_parser()\n"
             "for args in json.loads(sys.argv[1]):\n    parser.parse_args(args)\nprint('parsed', len(json.loads(sys.argv[1])))")
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/"}
    parsed = subprocess.run([sys.executable, "-c", check, json.dumps(airflow)], capture_output=True, text=True, env=env)
    assert parsed.returncode == 0 and f"parsed {len(airflow)}" in parsed.stdout, parsed.stderr[-2000:]
    # the healthchecks' curl is installed in the image
    assert all(SERVICES[s]["healthcheck"]["test"][1] == "curl" for s in IMAGE if "healthcheck" in SERVICES[s])
    assert re.search(r"apt-get install [^\n]*\bcurl\b", DOCKERFILE)


def test_ports_hosts_and_healthchecks_agree():
    env = COMPOSE["x-mlscale-env"]
    mlflow, api = SERVICES["mlflow"], SERVICES["airflow-apiserver"]
    mlflow_port = mlflow["environment"]["MLFLOW_PORT"]
    assert mlflow["ports"][0].endswith(f":{mlflow_port}")
    assert _port(mlflow["healthcheck"]["test"][-1]) == mlflow_port
    assert env["MLSCALE_MLFLOW_HOST"] == "mlflow" and env["MLSCALE_MLFLOW_PORT"] == mlflow_port
    assert env["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"
    assert SERVICES["mlflow-init"]["environment"]["MLSCALE_MLFLOW_PORT"] == mlflow_port
    api_port = _steps("airflow-apiserver")[-1][_steps("airflow-apiserver")[-1].index("--port") + 1]
    assert api["ports"][0].endswith(f":{api_port}")
    assert _port(api["healthcheck"]["test"][-1]) == api_port
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(f"http://airflow-apiserver:{api_port}/")
    # PostgreSQL and Redis at their service names and default ports, wherever a URL names them
    urls = [v for svc in SERVICES.values() for v in svc.get("environment", {}).values() if "://" in str(v)]
    for url in urls:
        host = re.search(r"@([^:/]+)", url) or re.search(r"://([^:/]+)", url)
        if url.startswith(("postgresql", "db+postgresql")):
            assert host.group(1) == "postgres" and _port(url.replace("@", "://", 1)) == "5432", url
        elif url.startswith("redis"):
            assert host.group(1) == "redis" and _port(url) == "6379", url
    assert (env["MLSCALE_WH_HOST"], env["MLSCALE_WH_PORT"]) == ("postgres", "5432")
    assert "pg_isready" in SERVICES["postgres"]["healthcheck"]["test"][-1]
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_image_versions_agree_with_requirements():
    python = re.search(r"^FROM python:(\d+\.\d+)", DOCKERFILE, re.M).group(1)
    assert f'requires-python = ">={python},<3.{int(python.split(".")[1]) + 1}"' in (ROOT / "pyproject.toml").read_text()
    assert "sys.version_info[:2] == ({}, {})".format(*python.split(".")) in (ROOT / "Makefile").read_text()
    assert "COPY requirements.lock ./" in DOCKERFILE and "pip install --no-cache-dir -r requirements.lock" in DOCKERFILE
    lock = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M))
    lock = {name.lower().replace("_", "-"): version for name, version in lock.items()}
    pins = re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]+\])?==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pins and {n.lower(): v for n, v in pins} == {n.lower(): lock[n.lower().replace("_", "-")] for n, _ in pins}
    assert "apache-airflow-providers-celery" in lock  # the workers' `airflow celery worker`
    # the compose PostgreSQL is the major version of the embedded one `make demo` runs on
    import pgserver
    embedded = subprocess.run([str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "postgres"), "--version"],
                              capture_output=True, text=True, check=True).stdout
    major = re.search(r"(\d+)\.\d+", embedded).group(1)
    assert SERVICES["postgres"]["image"] == f"postgres:{major}"


# Variables the code reads that a container may leave unset, and why; any other must be set (compose or image).
UNSET_IN_CONTAINERS = {
    "MLSCALE_ROOT": "the install's own folder, /opt/mlscale",
    "MLSCALE_STATE_DIR": "<root>/.mlscale (MLflow's artifacts are a volume there)",
    "MLSCALE_SPECS_DIR": "include/models in the image",
    "MLSCALE_SOURCES_FILE": "include/contracts/sources.yml in the image",
    "MLSCALE_DB_SUFFIX": "tests and benches only",
    "MLSCALE_DBT_CI_SCHEMA": "`mlscale dbt-ci` only",
    "MLSCALE_UP_TIMEOUT": "`make up` only", "MLSCALE_AIRFLOW_PORT": "`make up` only",
    "MLSCALE_AIRFLOW_HOST": "`make up` only", "MLSCALE_AIRFLOW_USERS": "`make up` only",
    "MLSCALE_CELERY_BROKER_URL": "`make up EXECUTOR=celery` only (compose sets Airflow's broker URL itself)",
    "MLSCALE_WORKER_NAME": "`make up EXECUTOR=celery`'s workers only",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "read by `make up`; Airflow's default (8793) in each container",
    "USER": "audit name fallback", "PGUSER": "MLSCALE_PG_DSN names the role",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "the CLI sets it itself",
}
READS = re.compile(r"""(?:environ\.get|env\.get|getenv|env_var)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
                   r"""|environ\[["']([A-Z][A-Z0-9_]+)["']\]|\$\{([A-Z][A-Z0-9_]+):\?""")


def test_every_variable_the_code_reads_is_set():
    """The bundle's code (tasks, dbt's profile) on every Airflow container; each script and one-off command on its
    own service."""
    sources = [*ROOT.glob("include/mlscale/**/*.py"), *ROOT.glob("dags/**/*.py"), *ROOT.glob("plugins/**/*.py"),
               ROOT / "dbt_project" / "profiles.yml"]
    read = {name for path in sources for match in READS.findall(path.read_text()) for name in match if name}
    assert {"MLSCALE_PG_DSN", "MLSCALE_MLFLOW_HOST", "MLSCALE_WH_HOST", "MLSCALE_GIT_COMMIT"} <= read  # the scan works
    api_only = {"AIRFLOW_PASSWORDS", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"}  # `mlscale airflow-passwords`
    needed = read - set(UNSET_IN_CONTAINERS) - api_only
    for name in AIRFLOW:
        missing = needed - set(SERVICES[name]["environment"]) - set(DOCKERFILE_ENV)
        assert not missing, (name, missing)
    assert api_only <= set(SERVICES["airflow-apiserver"]["environment"])
    script = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker" / "mlflow-server.sh").read_text()))
    assert script <= set(SERVICES["mlflow"]["environment"]), script - set(SERVICES["mlflow"]["environment"])
    # `mlscale mlflow-account` reads MLSCALE_MLFLOW_<role>_USER and _PASSWORD for the pipeline and the reader
    assert {f"MLSCALE_MLFLOW_{role}_{what}" for role in ("PIPELINE", "READER") for what in ("USER", "PASSWORD")} \
        <= set(SERVICES["mlflow-init"]["environment"])
    assert DOCKERFILE_ENV["MLSCALE_GIT_COMMIT"] == "${GIT_COMMIT}"
    assert COMPOSE["x-mlscale"]["build"]["args"]["GIT_COMMIT"] == "${GIT_COMMIT:-unknown}"


def test_the_dbt_manifest_is_built_into_the_image():
    """Cosmos renders warehouse_etl from dbt_project/target/manifest.json in every container: the image builds it
    (after the project is copied in), no container does, and a local target folder never reaches the image."""
    run = DOCKERFILE.index("mlscale dbt-manifest")
    assert DOCKERFILE.index("COPY dbt_project ./dbt_project") < run < DOCKERFILE.index("USER mlscale")
    assert re.search(r"^RUN[^\n]*(\\\n[^\n]*)*mlscale dbt-manifest", DOCKERFILE, re.M)
    assert all("dbt parse" not in " ".join(step) for name in IMAGE for step in _steps(name))
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "dbt_project/target*" in ignored and ".mlscale" in ignored and ".venv" in ignored


def test_the_dags_come_from_the_image_unless_a_git_bundle_is_configured():
    value = COMPOSE["x-mlscale-env"]["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]
    default = re.fullmatch(r"\$\{DAG_BUNDLE_CONFIG_LIST:-(.*)\}", value).group(1)
    from airflow.configuration import conf

    assert json.loads(default) == json.loads(conf.get_default_value("dag_processor", "dag_bundle_config_list"))
    assert re.search(r"apt-get install [^\n]*\bgit\b", DOCKERFILE)  # GitDagBundle clones with the git CLI
    assert "apache-airflow-providers-git" in (ROOT / "requirements.txt").read_text()
