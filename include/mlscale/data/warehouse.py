"""The warehouse_etl run's own bookkeeping: which landing files it validates and publishes, source freshness, and
the vacuum after a build."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from psycopg import errors, sql

from mlscale import postgres
from mlscale.config import Settings

log = logging.getLogger(__name__)


class StaleSource(RuntimeError):
    """A source is older than its error threshold: the run must not build on it."""


class DbtFailed(RuntimeError):
    """A dbt command failed; the message ends with dbt's own output."""


def target_path(settings: Settings, *args: str) -> Path:
    """Where a dbt command with these arguments writes its artefacts: the namespace's target folder
    (`settings.dbt_target_dir`), or a folder in it for each value of `--vars`.

    dbt keeps the project's parse (`partial_parse.msgpack`) for the command-line vars it was made with and parses
    the whole project again when they differ (2 s here, 3 s on a slower machine: as long as the build of a few
    unchanged models). The KPI marts and the matured-predictions view are built with the specs' campaigns as vars
    and the warehouse without: in one folder each would throw away the other's parse."""
    if "--vars" not in args:
        return settings.dbt_target_dir
    value = args[args.index("--vars") + 1]
    return settings.dbt_target_dir / f"vars-{hashlib.sha256(value.encode()).hexdigest()[:12]}"


def _run_dbt(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The dbt CLI of this venv on the settings' warehouse and project, output captured.

    Artefacts go to the namespace's target folder (`target_path`) unless `args` name one, and logs to
    `<state>/log/dbt<suffix>`: two namespaces (the demo and the tests, or two test workers) never write the
    same files, and the manifest Cosmos renders from is only written by `mlscale setup`. `env` adds variables."""
    if "--target-path" not in args:
        args = (*args, "--target-path", str(target_path(settings, *args)))
    args = (*args, "--log-path", str(settings.log_dir / f"dbt{settings.db_suffix}"))
    try:
        return subprocess.run([str(Path(sys.executable).parent / "dbt"), *args, "--project-dir",
                               str(settings.dbt_project_dir)],
                              env={**os.environ, **settings.service_env(), **(env or {})}, capture_output=True,
                              text=True, cwd=settings.dbt_project_dir, timeout=settings.dbt_timeout)
    except subprocess.TimeoutExpired as exc:
        raise DbtFailed(f"dbt {' '.join(args[:2])} did not finish within {settings.dbt_timeout} s and was stopped "
                        f"(MLSCALE_DBT_TIMEOUT); its statements end by the server's statement_timeout "
                        f"({settings.pg_statement_timeout} s)") from exc


def dbt(settings: Settings, *args: str, env: dict[str, str] | None = None) -> str:
    """Run the dbt CLI on the settings' warehouse; return its output, raise DbtFailed when it fails."""
    res = _run_dbt(settings, *args, env=env)
    if res.returncode != 0:
        raise DbtFailed(f"dbt {' '.join(args)} failed:\n{res.stdout[-4000:]}{res.stderr[-2000:]}")
    return res.stdout


def drop_schemas(settings: Settings) -> None:
    """Empty the warehouse: drop every schema but the system ones (a replay starts from nothing)."""
    with postgres.warehouse(settings, autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute(
            "select nspname from pg_namespace where nspname not in ('public', 'information_schema')"
            " and nspname not like 'pg\\_%'")]
        for schema in schemas:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))


def run_etl(settings: Settings, run_id: str) -> dict:
    """warehouse_etl's steps in one process, for replays and `mlscale etl`: claim, raw gate, dbt build, vacuum,
    feature gate, publish, and the run's Data Docs pages (also when a step failed).

    The DAG runs the same functions as tasks (dbt one model per task, through Cosmos). Source freshness
    is left out: a replay loads every file the moment it is written, so its sources are always fresh.
    """
    from mlscale.data.quality import build_docs, gate, suites

    claimed = claim_batch(settings, run_id)
    try:
        raw = gate(settings, suites(settings, "raw"), run_id)
        dbt(settings, "build")
        vacuum_and_analyze(settings)
        marts = gate(settings, suites(settings, "mart"), run_id)
    finally:
        build_docs(settings, run_id)
    return {"claimed": claimed, "published": publish_batch(settings, run_id), "raw_checks": raw, "mart_checks": marts}


# autovacuum's defaults: a table is vacuumed once its dead rows pass 50 + 20% of its live rows, and analyzed once
# the rows written since its last ANALYZE pass 50 + 10% of them.
VACUUM_THRESHOLD, VACUUM_SCALE_FACTOR = 50, 0.2
ANALYZE_THRESHOLD, ANALYZE_SCALE_FACTOR = 50, 0.1


def vacuum_and_analyze(settings: Settings) -> list[str]:
    """VACUUM (ANALYZE) every warehouse table whose dead rows pass autovacuum's default threshold, and ANALYZE every
    other table whose rows written since its last ANALYZE pass autoanalyze's; return the tables, in that order.

    A daily build deletes and rewrites the open weeks of the feature mart's parts (and incremental models their
    changed keys), and the feature gate, training and scoring read those tables right after it. autovacuum comes
    later if at all (it naps a minute between rounds, is throttled, and is off on some servers): at 100,000
    customers, six daily runs left 3M dead rows beside each part's 1.4M live ones, and the mart gate took 4.4 s
    instead of 3.0 s (BENCHMARKS.md, *GX*). Without autoanalyze a table loaded in bulk has no statistics at all: at
    a million customers the first daily run's staging tests on the claimed keys then scanned all 26M rows of
    raw.order_items for each key instead of using its index (over 10 minutes per test; 1.7 s to analyze it).
    VACUUM takes no lock that blocks readers or writers; a table this role does not own is skipped by PostgreSQL
    with a warning. Temporary tables are left alone, as autovacuum leaves them: those of other sessions (a client's
    scratch tables, kept by its pooled connections) cannot be vacuumed or analyzed from here."""
    done = []
    with postgres.warehouse(settings, autocommit=True) as conn:  # VACUUM cannot run in a transaction
        rows = conn.execute(
            "select schemaname, relname, to_vacuum, n_dead_tup, n_mod_since_analyze, n_live_tup from ("
            "  select s.*, n_dead_tup > %(vt)s + %(vs)s * n_live_tup as to_vacuum,"
            "         n_mod_since_analyze > %(at)s + %(as)s * n_live_tup as to_analyze from pg_stat_user_tables s"
            "  join pg_class c on c.oid = s.relid where c.relpersistence <> 't') t"  # another session's temp table
            " where to_vacuum or to_analyze order by to_vacuum desc, n_dead_tup + n_mod_since_analyze desc",
            {"vt": VACUUM_THRESHOLD, "vs": VACUUM_SCALE_FACTOR, "at": ANALYZE_THRESHOLD,
             "as": ANALYZE_SCALE_FACTOR}).fetchall()
        for schema, table, vacuum, dead, written, live in rows:
            t0 = time.monotonic()
            try:
                conn.execute(sql.SQL("vacuum (analyze) {}" if vacuum else "analyze {}").format(
                    sql.Identifier(schema, table)))
            except errors.UndefinedTable:  # dropped since the list was read (a quality gate's copy, say)
                log.info("%s.%s: dropped before its turn, nothing to do", schema, table)
                continue
            log.info("%s %s.%s: %d dead rows, %d written since its last analyze, %d live; %.1f s",
                     "vacuumed" if vacuum else "analyzed", schema, table, dead, written, live, time.monotonic() - t0)
            done.append(f"{schema}.{table}")
    return done


def claim_batch(settings: Settings, run_id: str) -> int:
    """Claim every loaded file no ETL run has published yet (including those of failed runs); return the count."""
    with postgres.warehouse(settings) as conn:
        cur = conn.execute(
            "update ops.ingest_files set etl_run_id = %s, etl_status = 'claimed'"
            " where status = 'loaded' and etl_status is distinct from 'published'",
            (run_id,),
        )
        claimed = cur.rowcount
    log.info("run %s claimed %d newly loaded file(s)", run_id, claimed)
    return claimed


def publish_batch(settings: Settings, run_id: str) -> int:
    """Mark the run's files as published: their rows passed every gate and reached the marts."""
    with postgres.warehouse(settings) as conn:
        cur = conn.execute(
            "update ops.ingest_files set etl_status = 'published' where etl_run_id = %s and etl_status = 'claimed'",
            (run_id,),
        )
        return cur.rowcount


def freshness_target(settings: Settings) -> Path:
    """dbt's target folder for `dbt source freshness`, one per database suffix."""
    return settings.state_dir / f"dbt-freshness{settings.db_suffix}"


def source_freshness(settings: Settings) -> dict[str, str]:
    """`dbt source freshness`; return status per source, raise StaleSource when any is past its error threshold."""
    # A target folder of its own (the manifest Cosmos reads stays untouched), kept between runs so dbt
    # parses only what changed since the last check: 6 s instead of 9-10 s for a full parse.
    target = freshness_target(settings)
    sources_json = target / "sources.json"
    sources_json.unlink(missing_ok=True)
    res = _run_dbt(settings, "source", "freshness", "--select", "source:*", "--target-path", str(target))  # fails if stale
    if not sources_json.exists():
        raise RuntimeError(f"dbt source freshness did not run:\n{res.stdout[-3000:]}{res.stderr[-2000:]}")
    results = json.loads(sources_json.read_text())["results"]
    status = {r["unique_id"].removeprefix("source.mlscale."): r["status"] for r in results}
    for r in results:
        name = r["unique_id"].removeprefix("source.mlscale.")
        age = r.get("max_loaded_at_time_ago_in_s")
        level = {"pass": logging.INFO, "warn": logging.WARNING}.get(r["status"], logging.ERROR)
        log.log(level, "freshness %s: %s (last load %s hours ago)", name, r["status"],
                f"{age / 3600:.1f}" if age is not None else "?")
    stale = [n for n, s in status.items() if s in ("error", "runtime error")]
    if stale:
        raise StaleSource(f"source(s) past their freshness error threshold: {', '.join(stale)}; "
                          "check that ingest_landing runs and that files still arrive")
    return status
