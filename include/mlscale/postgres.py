"""PostgreSQL: connections, and making sure a server answers (the given one, or a private cluster)."""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from mlscale.config import Settings

log = logging.getLogger(__name__)

PRIVATE_PORT = 54329
PRIVATE_USER = "mlscale"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be reached or started; the message says what to do."""


def create_if_missing(conn: psycopg.Connection, statements) -> None:
    """Run `create ... if not exists` statements. Two sessions creating the same table at the same moment (two
    monitor_ DAGs on a new warehouse) make PostgreSQL fail the second with a unique violation in its catalog, once
    the first commits: then the statements run again, and find everything there."""
    try:
        with conn.transaction():
            conn.execute(statements)
    except psycopg.errors.UniqueViolation:
        with conn.transaction():
            conn.execute(statements)


def table_exists(conn: psycopg.Connection, table: str) -> bool:
    """True when `schema.table` exists (readers of tables another step creates check first)."""
    return conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is not None


def frame(conn: psycopg.Connection, query, params=None, *, requires: str | None = None) -> "pd.DataFrame":
    """The rows of `query` as a pandas DataFrame with the query's column names; an empty one while the table
    `requires` (one another step creates) does not exist yet."""
    import pandas as pd

    if requires is not None and not table_exists(conn, requires):
        return pd.DataFrame()
    cur = conn.execute(query, params)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def connect(dsn: str, settings: Settings | None = None, **kwargs) -> psycopg.Connection:
    """Open a psycopg 3 connection: the one place mlscale does. It waits at most `pg_connect_timeout` for the
    server, and its statements and lock waits are bounded by `pg_statement_timeout` and `pg_lock_timeout` (from
    `settings`, default: the environment's); options in the DSN come after, so they win. `kwargs` go to
    psycopg.connect (e.g. autocommit=True)."""
    settings = settings or Settings.from_env()
    kwargs.setdefault("connect_timeout", settings.pg_connect_timeout)
    kwargs.setdefault("options", f"{settings.pg_options()} {conninfo_to_dict(dsn).get('options', '')}".strip())
    return psycopg.connect(dsn, **kwargs)


def database(settings: Settings, dbname: str, **kwargs) -> psycopg.Connection:
    """A connection to database `dbname` on the configured server."""
    return connect(settings.dsn(dbname), settings, **kwargs)


def warehouse(settings: Settings, **kwargs) -> psycopg.Connection:
    """A connection to the warehouse database (raw, staging, marts, ml, ops)."""
    return database(settings, settings.warehouse_db, **kwargs)


def server(settings: Settings, **kwargs) -> psycopg.Connection:
    """A connection to the server's maintenance database, for creating and dropping databases."""
    return connect(settings.pg_dsn, settings, **kwargs)


def answers(dsn: str) -> bool:
    """True when a server accepts a connection with `dsn` within 3 s."""
    try:
        with connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def ensure_server(settings: Settings) -> str:
    """Return a DSN that answers: MLSCALE_PG_DSN, else a recorded private cluster, else 127.0.0.1:5432,
    else a new private cluster under the state folder."""
    if settings.pg_dsn_override:
        if not answers(settings.pg_dsn_override):
            raise PostgresUnavailable(
                f"MLSCALE_PG_DSN={settings.pg_dsn_override!r} does not answer. Start that server, "
                "or unset MLSCALE_PG_DSN to let mlscale use 127.0.0.1:5432 or start its own cluster."
            )
        return settings.pg_dsn_override
    data_dir = settings.state_dir / "pgdata"
    if settings.pg_dsn_file.exists():
        dsn = settings.pg_dsn_file.read_text().strip()
        if answers(dsn):
            return dsn
        if data_dir.exists():
            log.info("restarting the private PostgreSQL cluster in %s", data_dir)
            return start_private_cluster(data_dir, PRIVATE_PORT, find_bindir())
    if answers(settings.pg_dsn):
        return settings.pg_dsn
    log.info("nothing answers at %s; starting a private PostgreSQL cluster in %s", settings.pg_dsn, data_dir)
    dsn = start_private_cluster(data_dir, PRIVATE_PORT, find_bindir())
    settings.pg_dsn_file.parent.mkdir(parents=True, exist_ok=True)
    settings.pg_dsn_file.write_text(dsn + "\n")
    return dsn


def find_bindir() -> Path:
    """Folder holding `initdb` and `pg_ctl`: the installed PostgreSQL, else pip's `pgserver` wheel."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb")).parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return _pgserver_bindir()


def _pgserver_bindir() -> Path:
    """The PostgreSQL binaries inside the `pgserver` wheel (in requirements.txt)."""
    spec = importlib.util.find_spec("pgserver")
    bindir = Path(spec.origin).parent / "pginstall" / "bin" if spec else None
    if bindir is None or not (bindir / "initdb").exists():
        raise PostgresUnavailable(
            "No PostgreSQL server answers, no PostgreSQL binaries are installed, and the embedded PostgreSQL "
            "(pip package pgserver) is missing. Run `make demo` (it installs requirements.lock), install "
            "PostgreSQL (apt-get install postgresql), or point MLSCALE_PG_DSN at a running server."
        )
    return bindir


def _server_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as: None for a normal user; `postgres` or `nobody` when root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            continue
    raise PostgresUnavailable("Running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL.")


def start_private_cluster(data_dir: Path, port: int, bindir: Path) -> str:
    """Initialise (when new) and start a cluster in `data_dir` on 127.0.0.1:`port`; return its DSN."""
    data_dir = data_dir.resolve()
    owner = _server_user()
    run_as: dict = {}
    if owner:
        run_as = {"user": owner[0], "group": owner[1], "extra_groups": []}
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if owner:
        _check_reachable(data_dir.parent, owner[0])
    socket_dir = data_dir.parent / "pgsocket"
    socket_dir.mkdir(exist_ok=True)
    if owner:
        os.chown(socket_dir, *owner)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    if not (data_dir / "PG_VERSION").exists():
        data_dir.mkdir(exist_ok=True)
        if owner:
            os.chown(data_dir, *owner)
        _run([str(bindir / "initdb"), "-D", str(data_dir), "-U", PRIVATE_USER, "--auth=trust",
              "-E", "UTF8", "--no-sync"], run_as, env, "initdb")
    logfile = data_dir / "server.log"
    opts = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1"
    _run([str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(logfile), "-o", opts, "-w", "-t", "60", "start"],
         run_as, env, "pg_ctl start", logfile)
    dsn = f"postgresql://{PRIVATE_USER}@127.0.0.1:{port}/postgres"
    if not answers(dsn):
        raise PostgresUnavailable(f"the private cluster in {data_dir} started but does not answer at {dsn}; see {logfile}")
    return dsn


def _check_reachable(folder: Path, uid: int) -> None:
    """The server runs as `uid`: every folder above its data must let it pass."""
    for parent in [folder, *folder.parents]:
        st = parent.stat()
        if st.st_uid != uid and not st.st_mode & 0o001:
            raise PostgresUnavailable(
                f"PostgreSQL must run as a non-root user (uid {uid}), which cannot enter {parent} (mode "
                f"{oct(st.st_mode & 0o777)}). Set MLSCALE_STATE_DIR to a folder that user can reach, or MLSCALE_PG_DSN."
            )


def stop_private_cluster(data_dir: Path, bindir: Path | None = None) -> None:
    """Stop the private cluster in `data_dir` (fast shutdown) when it runs."""
    if not (data_dir / "postmaster.pid").exists():
        return
    owner = _server_user()
    run_as = {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}
    _run([str((bindir or find_bindir()) / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
         run_as, dict(os.environ), "pg_ctl stop")


def _run(cmd: list[str], run_as: dict, env: dict, what: str, logfile: Path | None = None) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd="/", **run_as)
    if res.returncode != 0:
        tail = logfile.read_text()[-2000:] if logfile and logfile.exists() else ""
        raise PostgresUnavailable(
            f"{what} failed ({' '.join(cmd)}):\n{res.stdout}{res.stderr}{tail}\n"
            "Fix the problem above, or set MLSCALE_PG_DSN to a PostgreSQL server that runs."
        )


def ensure_databases(settings: Settings, names: list[str]) -> list[str]:
    """Create each database in `names` that does not exist; return the ones created."""
    created = []
    with server(settings, autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("select datname from pg_database")}
        for name in names:
            if name not in existing:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
                created.append(name)
    return created


def drop_databases(settings: Settings, names: list[str]) -> None:
    """Drop each database in `names` that exists (closing its connections)."""
    with server(settings, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
