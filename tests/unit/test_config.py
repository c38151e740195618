from pathlib import Path

from mlscale.config import Settings


def test_defaults_point_at_local_services(tmp_path):
    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path)})
    assert s.pg_dsn == "postgresql://127.0.0.1:5432/postgres"
    assert (s.warehouse_db, s.airflow_db, s.mlflow_db) == ("warehouse", "airflow", "mlflow")
    assert s.mlflow_uri == "http://127.0.0.1:5000"
    assert s.landing_dir == tmp_path / "landing"


def test_override_dsn_and_suffix(tmp_path):
    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path), "MLSCALE_PG_DSN": "postgresql://bob:pw@db.example:6543/postgres",  # pragma: allowlist secret
                           "MLSCALE_DB_SUFFIX": "_test"})
    assert s.sqlalchemy_url(s.warehouse_db) == "postgresql+psycopg2://bob:pw@db.example:6543/warehouse_test"  # pragma: allowlist secret
    env = s.service_env()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@db.example:6543/airflow_test")
    assert env["MLSCALE_WH_DBNAME"] == "warehouse_test" and env["MLSCALE_WH_PORT"] == "6543"


def test_private_cluster_dsn_is_picked_up(tmp_path):
    (tmp_path / ".mlscale").mkdir()
    (tmp_path / ".mlscale" / "pg.dsn").write_text("postgresql://mlscale@127.0.0.1:54329/postgres\n")
    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path)})
    assert s.pg_dsn == "postgresql://mlscale@127.0.0.1:54329/postgres"
    assert s.conn_params("warehouse")["user"] == "mlscale"
    assert Path(s.service_env()["AIRFLOW_HOME"]) == tmp_path / ".mlscale" / "airflow"


def test_each_namespace_has_its_own_dbt_target_and_cosmos_cache(tmp_path):
    demo = Settings.from_env({"MLSCALE_ROOT": str(tmp_path)})
    worker = Settings.from_env({"MLSCALE_ROOT": str(tmp_path), "MLSCALE_DB_SUFFIX": "_test_gw1"})
    assert demo.dbt_target_dir == tmp_path / "dbt_project" / "target"
    assert worker.dbt_target_dir == tmp_path / "dbt_project" / "target_test_gw1"
    # the manifest Cosmos renders from is the one `mlscale setup` builds, whatever the namespace
    assert demo.dbt_manifest == worker.dbt_manifest == tmp_path / "dbt_project" / "target" / "manifest.json"
    assert worker.service_env()["AIRFLOW__COSMOS__CACHE_DIR"] == str(tmp_path / ".mlscale" / "cosmos_test_gw1")


def test_each_value_of_dbt_vars_has_a_target_folder_of_its_own(tmp_path):
    from mlscale.data.warehouse import target_path

    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path), "MLSCALE_DB_SUFFIX": "_test_gw1"})
    assert target_path(s, "build", "--select", "tag:kpi") == s.dbt_target_dir
    campaigns = target_path(s, "build", "--select", "tag:kpi", "--vars", '{"top_k": 0.1}')
    assert campaigns.parent == s.dbt_target_dir and campaigns.name.startswith("vars-")
    # the same vars give the same folder whatever the command; other vars another one
    assert target_path(s, "docs", "generate", "--vars", '{"top_k": 0.1}') == campaigns
    assert target_path(s, "build", "--vars", '{"top_k": 0.2}') not in (campaigns, s.dbt_target_dir)


def test_timeouts_have_defaults_each_variable_overrides_and_child_processes_inherit(tmp_path):
    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path)})
    assert (s.pg_connect_timeout, s.pg_statement_timeout, s.pg_lock_timeout, s.dbt_timeout, s.task_timeout,
            s.task_retry_delay, s.mlflow_timeout, s.mlflow_retries) == (10, 3600, 300, 7200, 7200, 60, 60, 3)
    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path), "MLSCALE_PG_STATEMENT_TIMEOUT": "90",
                           "MLSCALE_PG_LOCK_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                           "MLSCALE_TASK_RETRY_DELAY": "5"})
    assert s.task_retry_delay == 5
    assert s.pg_options() == "-c statement_timeout=90s -c lock_timeout=5s"
    env = s.service_env()
    assert env["PGOPTIONS"] == s.pg_options()  # dbt, Airflow and MLflow sessions get the same bounds
    assert (env["MLSCALE_PG_STATEMENT_TIMEOUT"], env["MLFLOW_HTTP_REQUEST_TIMEOUT"]) == ("90", "20")
    assert Settings.from_env({**env, "MLSCALE_ROOT": str(tmp_path)}).pg_statement_timeout == 90
