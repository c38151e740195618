from pathlib import Path

from mlscale.config import Settings


def test_defaults_point_at_local_services(tmp_path):
    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path)})
    assert s.pg_dsn == "postgresql://127.0.0.1:5432/postgres"
    assert (s.warehouse_db, s.airflow_db, s.mlflow_db) == ("warehouse", "airflow", "mlflow")
    assert s.mlflow_uri == "http://127.0.0.1:5000"
    assert s.landing_dir == tmp_path / "landing"


def test_override_dsn_and_suffix(tmp_path):
    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path), "MLSCALE_PG_DSN": "postgresql://bob:pw@db.example:6543/postgres",
                           "MLSCALE_DB_SUFFIX": "_test"})
    assert s.sqlalchemy_url(s.warehouse_db) == "postgresql+psycopg2://bob:pw@db.example:6543/warehouse_test"
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
