"""One settings object read from the environment, with defaults that run on one machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG_DSN = "postgresql://127.0.0.1:5432/postgres"
# Settings field -> the variable that overrides it.
TIMEOUT_VARIABLES = {
    "pg_connect_timeout": "MLSCALE_PG_CONNECT_TIMEOUT", "pg_statement_timeout": "MLSCALE_PG_STATEMENT_TIMEOUT",
    "pg_lock_timeout": "MLSCALE_PG_LOCK_TIMEOUT", "dbt_timeout": "MLSCALE_DBT_TIMEOUT",
    "task_timeout": "MLSCALE_TASK_TIMEOUT", "task_retry_delay": "MLSCALE_TASK_RETRY_DELAY",
    "mlflow_timeout": "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "mlflow_retries": "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
}


@dataclass(frozen=True)
class Settings:
    """Where every service and folder is; every field can be overridden by an `MLSCALE_*` variable."""

    root: Path
    state_dir: Path
    landing_dir: Path
    reports_dir: Path
    pg_dsn_override: str | None
    db_suffix: str
    mlflow_host: str
    mlflow_port: int
    # Timeouts, in seconds: nothing waits forever on a server that hangs (each overridable by its variable).
    pg_connect_timeout: int = 10  # MLSCALE_PG_CONNECT_TIMEOUT: for a PostgreSQL server to accept a connection
    pg_statement_timeout: int = 3600  # MLSCALE_PG_STATEMENT_TIMEOUT: one SQL statement (also dbt's, Airflow's)
    pg_lock_timeout: int = 300  # MLSCALE_PG_LOCK_TIMEOUT: one statement waiting for a lock
    dbt_timeout: int = 7200  # MLSCALE_DBT_TIMEOUT: one dbt command mlscale runs
    task_timeout: int = 7200  # MLSCALE_TASK_TIMEOUT: one Airflow task (execution_timeout)
    task_retry_delay: int = 60  # MLSCALE_TASK_RETRY_DELAY: a failed Airflow task's wait before its retry (retry_delay)
    mlflow_timeout: int = 60  # MLFLOW_HTTP_REQUEST_TIMEOUT: one request to the MLflow server
    mlflow_retries: int = 3  # MLFLOW_HTTP_REQUEST_MAX_RETRIES: retries of a failed request (backoff 2, 4, 8 s)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Build the settings from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        root = Path(env.get("MLSCALE_ROOT", ROOT))
        state_dir = Path(env.get("MLSCALE_STATE_DIR", root / ".mlscale"))
        return cls(
            root=root,
            state_dir=state_dir,
            landing_dir=Path(env.get("MLSCALE_LANDING_DIR", root / "landing")),
            reports_dir=Path(env.get("MLSCALE_REPORTS_DIR", root / "reports")),
            pg_dsn_override=env.get("MLSCALE_PG_DSN") or None,
            db_suffix=env.get("MLSCALE_DB_SUFFIX", ""),
            mlflow_host=env.get("MLSCALE_MLFLOW_HOST", "127.0.0.1"),
            mlflow_port=int(env.get("MLSCALE_MLFLOW_PORT", "5000")),
            **{name: int(env[var]) for name, var in TIMEOUT_VARIABLES.items() if env.get(var)},
        )

    # --- PostgreSQL -------------------------------------------------------------------------
    @property
    def pg_dsn_file(self) -> Path:
        """Where `mlscale setup` records the DSN of a private cluster it started."""
        return self.state_dir / "pg.dsn"

    @cached_property
    def pg_dsn(self) -> str:
        """Admin DSN: `MLSCALE_PG_DSN`, else the private cluster setup started, else 127.0.0.1:5432."""
        if self.pg_dsn_override:
            return self.pg_dsn_override
        if self.pg_dsn_file.exists():
            return self.pg_dsn_file.read_text().strip()
        return DEFAULT_PG_DSN

    @property
    def warehouse_db(self) -> str:
        return f"warehouse{self.db_suffix}"

    @property
    def airflow_db(self) -> str:
        return f"airflow{self.db_suffix}"

    @property
    def mlflow_db(self) -> str:
        return f"mlflow{self.db_suffix}"

    def dsn(self, dbname: str) -> str:
        """libpq DSN for database `dbname` on the configured server."""
        return make_conninfo(self.pg_dsn, dbname=dbname)

    def conn_params(self, dbname: str) -> dict[str, str]:
        """Connection parameters (host, port, user, dbname, ...) for `dbname`."""
        params = conninfo_to_dict(self.dsn(dbname))
        params.setdefault("host", "127.0.0.1")
        params.setdefault("port", "5432")
        params.setdefault("user", os.environ.get("PGUSER") or _os_user())
        return {k: str(v) for k, v in params.items()}

    def sqlalchemy_url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg2 driver, as Airflow, MLflow and GX expect) for `dbname`."""
        p = self.conn_params(dbname)
        auth = p["user"] + (f":{p['password']}" if p.get("password") else "")
        return f"postgresql+psycopg2://{auth}@{p['host']}:{p['port']}/{dbname}"

    def pg_options(self) -> str:
        """libpq `options` (and PGOPTIONS) that bound every statement and lock wait of a session."""
        return f"-c statement_timeout={self.pg_statement_timeout}s -c lock_timeout={self.pg_lock_timeout}s"

    # --- MLflow --------------------------------------------------------------------------------
    def mlflow_http_env(self) -> dict[str, str]:
        """The variables MLflow's client reads on every request: its timeout and retries."""
        return {var: str(getattr(self, name)) for name, var in TIMEOUT_VARIABLES.items() if name.startswith("mlflow_")}

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.mlflow_host}:{self.mlflow_port}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.state_dir / f"mlartifacts{self.db_suffix}"

    # --- folders -----------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """pid files of the services these targets started."""
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def airflow_home(self) -> Path:
        return self.state_dir / f"airflow{self.db_suffix}"

    @property
    def dbt_project_dir(self) -> Path:
        return self.root / "dbt_project"

    @property
    def dbt_manifest(self) -> Path:
        """The manifest `mlscale setup` builds and Cosmos renders `warehouse_etl` from."""
        return self.dbt_project_dir / "target" / "manifest.json"

    @property
    def dbt_target_dir(self) -> Path:
        """dbt's target folder for the dbt commands this namespace runs (`target`, `target_test`, ...): runs of
        another namespace (tests, a replay) never write into the folder the demo's dbt reads, or each other's."""
        return self.dbt_project_dir / f"target{self.db_suffix}"

    @property
    def models_dir(self) -> Path:
        return self.root / "include" / "models"

    @property
    def gx_dir(self) -> Path:
        return self.root / "include" / "gx"

    # --- environment for Airflow, dbt and child processes ----------------------------------
    def service_env(self) -> dict[str, str]:
        """Variables Airflow, dbt, MLflow and the DAG tasks read; set before Airflow is imported."""
        wh = self.conn_params(self.warehouse_db)
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.root / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sqlalchemy_url(self.airflow_db),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__PROPAGATE_LOGS": "False",
            # Cosmos caches dbt's partial parse per DAG; one cache per namespace, as with dbt's target folder.
            "AIRFLOW__COSMOS__CACHE_DIR": str(self.state_dir / f"cosmos{self.db_suffix}"),
            "DO_NOT_TRACK": "1",
            "SCARF_ANALYTICS": "false",
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLSCALE_PG_DSN": self.pg_dsn,
            "MLSCALE_DB_SUFFIX": self.db_suffix,
            "MLSCALE_STATE_DIR": str(self.state_dir),
            "MLSCALE_LANDING_DIR": str(self.landing_dir),
            "MLSCALE_REPORTS_DIR": str(self.reports_dir),
            "MLSCALE_MLFLOW_PORT": str(self.mlflow_port),
            "DBT_PROFILES_DIR": str(self.dbt_project_dir),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "MLSCALE_WH_HOST": wh["host"],
            "MLSCALE_WH_PORT": wh["port"],
            "MLSCALE_WH_USER": wh["user"],
            "MLSCALE_WH_PASSWORD": wh.get("password", ""),
            "MLSCALE_WH_DBNAME": self.warehouse_db,
            # Every PostgreSQL session a child process opens through libpq (dbt, Airflow, MLflow) gets the
            # statement and lock timeouts; the child processes read the same settings.
            "PGOPTIONS": self.pg_options(),
            **{var: str(getattr(self, name)) for name, var in TIMEOUT_VARIABLES.items()},
        }


def _os_user() -> str:
    import getpass

    return getpass.getuser()


def settings() -> Settings:
    """The settings of this process, read from the environment."""
    return Settings.from_env()
