"""Small helpers the integration and e2e tests share: run dbt for real, read the warehouse, share built shops."""

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from filelock import FileLock
from psycopg import sql

from mlscale import postgres
from mlscale.config import Settings
from mlscale.local.datagen import ShopParams, generate
from mlscale.data.ingest import ingest_landing
from mlscale.postgres import answers
from mlscale.registry import forget as drop_registered_model  # noqa: F401 (re-exported for the tests)
from mlscale.data.warehouse import claim_batch, dbt, drop_schemas as empty_warehouse, publish_batch  # noqa: F401

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
# One id per test run, the same in all of its xdist workers; a run without xdist makes its own.
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex


def port(base: int) -> int:
    """A port of this worker's own: `base` + 10 x the xdist worker number (`base` without xdist)."""
    return base + 10 * int(WORKER.removeprefix("gw") or 0)


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_folder(prefix: str):
    """A temporary folder a PostgreSQL server run as a non-root user can enter (pytest's tmp_path is private to
    root), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_lock(settings: Settings, name: str) -> FileLock:
    """A lock the workers of a test run share (a file in the state folder, named for the run's base suffix)."""
    folder = settings.state_dir / "test-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / f"{name}{_base_suffix(settings)}.lock")


@contextlib.contextmanager
def once_per_run(settings: Settings, name: str):
    """Under the run's lock `name`: yields True to the first worker of this run to get there, False to the others."""
    with run_lock(settings, name) as lock:
        stamp = Path(lock.lock_file).with_suffix(".run")
        first = not stamp.exists() or stamp.read_text() != RUN_ID
        yield first
        stamp.write_text(RUN_ID)


def _base_suffix(settings: Settings) -> str:
    """The database suffix without the xdist worker's part: `_test` for `_test_gw1`."""
    return settings.db_suffix.removesuffix(f"_{WORKER}") if WORKER else settings.db_suffix


def template_name(settings: Settings, name: str) -> str:
    return f"warehouse{_base_suffix(settings)}_tpl_{name}"


def warehouse_from_template(settings: Settings, name: str, build: Callable[[Settings], None]) -> None:
    """Make the settings' warehouse a copy of the run's built shop `name`; the first worker to ask builds it.

    `build` fills an empty warehouse (through Airflow, if that is what the tests need); its result is kept as
    the database `warehouse_test_tpl_<name>` and every later caller gets a copy made by `CREATE DATABASE ...
    TEMPLATE`, which copies files: seconds, where the build takes minutes. The template carries the run's id
    in its comment, so one left by an earlier run (other code, other data) is never used."""
    template = template_name(settings, name)
    with run_lock(settings, f"template-{name}"):
        with postgres.server(settings, autocommit=True) as conn:
            current = conn.execute("select shobj_description(oid, 'pg_database') = %s from pg_database"
                                   " where datname = %s", (f"run {RUN_ID}", template)).fetchone()
        if current and current[0]:
            copy_database(settings, template, settings.warehouse_db)
            return
        empty_warehouse(settings)
        build(settings)
        copy_database(settings, settings.warehouse_db, template)
        with postgres.server(settings, autocommit=True) as conn:
            conn.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(template),
                                                                       sql.Literal(f"run {RUN_ID}")))


# The shop of the e2e modules (and of the CI gate tests), built through Airflow once per test run.
AIRFLOW_SHOP = ShopParams(customers=600, days=270, seed=41)


def airflow_shop(settings: Settings, landing: Path) -> None:
    """Make the settings' warehouse AIRFLOW_SHOP as ingest_landing and warehouse_etl (dag.test) built it."""
    def build(s: Settings) -> None:
        from mlscale.airflow import dagrun

        generate(AIRFLOW_SHOP, landing)
        os.environ["MLSCALE_LANDING_DIR"] = str(landing)
        try:
            for dag_id in ("ingest_landing", "warehouse_etl"):
                dagrun.run_dag(s, dag_id)
        finally:
            os.environ["MLSCALE_LANDING_DIR"] = str(s.landing_dir)

    warehouse_from_template(settings, "airflow_shop", build)


def copy_database(settings: Settings, source: str, target: str) -> None:
    """Replace database `target` with a copy of `source` (CREATE DATABASE ... TEMPLATE).

    A copy needs its source to itself: this worker's idle connections to it (pooled by GX or dbt) are ended
    first; the databases are the worker's own or the run's templates, so no one else's are."""
    with postgres.server(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(target)))
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s"
                     " and pid <> pg_backend_pid()", (source,))
        conn.execute(sql.SQL("create database {} template {}").format(sql.Identifier(target), sql.Identifier(source)))


def drop_templates(settings: Settings) -> None:
    """Drop the template databases of test runs on this suffix (nothing when no server answers)."""
    if not answers(settings.pg_dsn):
        return
    with postgres.server(settings, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("select datname from pg_database where datname like %s",
                                            (template_name(settings, "").replace("_", r"\_") + "%",))]
        for name in names:
            conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


def query(settings, sql: str) -> pd.DataFrame:
    """Rows of `sql` on the warehouse as a DataFrame."""
    with postgres.warehouse(settings) as conn:
        return postgres.frame(conn, sql)


def checksum(settings, relation: str) -> str:
    """md5 of every row of a table or view, in a fixed order: equal contents, equal checksum."""
    return scalar(settings, f"select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {relation} as t")


def scalar(settings, sql: str, *args):
    """The first column of the first row of `sql` on the warehouse."""
    with postgres.warehouse(settings) as conn:
        return conn.execute(sql, args or None).fetchone()[0]


def build(settings, *args: str) -> str:
    """`dbt build` (with `args`) of every file loaded so far, as warehouse_etl builds it without its GX gates:
    claim the files, build, publish. dbt reads only claimed or published files (macros/latest_delivery.sql),
    so a bare `dbt build` after an ingest would not see the new ones. Returns dbt's output."""
    run_id = f"test-build-{uuid.uuid4().hex[:8]}"
    claim_batch(settings, run_id)
    output = dbt(settings, "build", *args)
    publish_batch(settings, run_id)
    return output


def build_shop(settings, landing: Path, params: ShopParams) -> None:
    """An empty warehouse, then a generated shop through COPY ingest and `build` (no Airflow)."""
    empty_warehouse(settings)
    generate(params, landing)
    ingest_landing(settings.dsn(settings.warehouse_db), landing)
    build(settings)


# ml.customer_features is a view of its two parts (dbt_project/models/marts/ml/parts): rows are changed in the parts.
FEATURE_PARTS = ("ml.customer_features_part_0", "ml.customer_features_part_1")


def update_features(settings: Settings, assignments: str, where: str, params: tuple = ()) -> int:
    """`update <part> set <assignments> where <where>` on both parts of ml.customer_features; the rows updated."""
    with postgres.warehouse(settings) as conn:
        return sum(conn.execute(f"update {part} set {assignments} where {where}", params).rowcount
                   for part in FEATURE_PARTS)


# The one configuration churn_90d's search picks on the generated test shops: tests whose subject is not the
# search train the shipped spec with it alone (tests/e2e/conftest.py FAST, and `one_configuration`).
ONE_CONFIGURATION = [{"name": "logistic_regression", "params": {"C": 0.1}}]


def one_configuration(data: dict) -> None:
    """A spec edit for `write_spec_variant`: the search cut to ONE_CONFIGURATION."""
    data["candidates"] = ONE_CONFIGURATION


def write_spec_variant(folder: Path, model: str, edit) -> Path:
    """`folder` holding only `model`'s shipped spec after `edit(data)` changed its YAML data (a specs folder for
    MLSCALE_SPECS_DIR)."""
    import yaml

    from mlscale.specs import SPECS_DIR

    data = yaml.safe_load((SPECS_DIR / f"{model}.yml").read_text())
    edit(data)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{model}.yml").write_text(yaml.safe_dump(data))
    return folder
