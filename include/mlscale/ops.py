"""The ops schema: the pipeline's own records, created here and nowhere else, and the readers that the business
report, the ML models page and the demo summary share.

- ingest: `ops.ingest_files` (the ledger: one row per file by content hash, with its ETL status),
  `ops.ingest_paths` (paths seen, with size and mtime) and `ops.quarantine` (rows that broke the contract);
- dq_results: every Great Expectations result of every run (and, while a gate runs, a view `gx_<suite>_<hash>`
  of the rows a `copy: false` suite checks: mlscale.data.quality);
- model_promotions: every promotion decision (promoted, rejected, aborted, rolled back) with its gates;
- model_artifacts: the sha256 of each registered version's files, recorded at registration (the copy that a
  version's files are verified against; the `artifact_sha256` tag on the version is for people);
- model_monitoring: every monitoring check and decision;
- extract: `ops.extract_cursors` (how far `mlscale extract` has loaded each table of a database source).

(`ops.dbt_model_builds` is dbt's: the post-hook macro `record_build` writes it, `lineage` reads it.)
"""

from __future__ import annotations

import pandas as pd
import psycopg

from mlscale.postgres import create_if_missing, frame

DECISIONS = ("promoted", "rejected", "aborted", "rolled_back")

DDL = {
    "ingest": """
create schema if not exists ops;
create table if not exists ops.ingest_files (
    sha256 text primary key,
    feed text not null,
    path text not null,
    -- loaded, rejected (broke the contract) or retracted (taken back by hand)
    status text not null check (status in ('loaded', 'rejected', 'retracted')),
    rows_loaded integer not null default 0,
    rows_quarantined integer not null default 0,
    extra_columns text[] not null default '{}',
    error text,
    ingested_at timestamptz not null default now(),
    etl_run_id text,   -- the warehouse_etl run that claimed this file
    etl_status text    -- claimed (being validated), published (passed every gate, in the marts)
);
-- Every landing path seen, with the size and mtime it had when hashed: a run hashes only the files
-- that are new or changed since (a re-delivery under another path is still caught by its sha256).
create table if not exists ops.ingest_paths (
    path text primary key,
    size_bytes bigint not null,
    mtime_ns bigint not null,
    sha256 text not null references ops.ingest_files (sha256)
);
create table if not exists ops.quarantine (
    file_sha256 text not null,
    path text not null,
    line_no integer not null,
    raw_text text not null,
    reason text not null,
    quarantined_at timestamptz not null default now(),
    primary key (file_sha256, line_no)
);
""",
    "dq_results": """
create schema if not exists ops;
create table if not exists ops.dq_results (
    id bigserial primary key,
    run_id text not null,
    suite text not null,
    expectation text not null,
    kwargs jsonb not null,
    severity text not null,
    success boolean not null,
    unexpected_count bigint,
    unexpected_percent double precision,
    observed_value text,
    checked_at timestamptz not null default now()
);
""",
    "model_promotions": f"""
select pg_advisory_xact_lock(hashtext('mlscale.ops.model_promotions'));
create schema if not exists ops;
create table if not exists ops.model_promotions (
    id bigserial primary key,
    model text not null,
    from_version text,
    to_version text not null,
    stage text not null,
    decision text not null,
    candidate_metrics jsonb,
    production_metrics jsonb,
    gates jsonb not null,
    reason text not null,
    airflow_run_id text,
    decided_by text,
    decided_at timestamptz not null default now()
);
alter table ops.model_promotions add column if not exists decided_by text;
alter table ops.model_promotions drop constraint if exists model_promotions_decision_check;
alter table ops.model_promotions add constraint model_promotions_decision_check
    check (decision in ({", ".join(f"'{d}'" for d in DECISIONS)}));
""",
    "model_artifacts": """
create schema if not exists ops;
create table if not exists ops.model_artifacts (
    model text not null,
    version text not null,
    run_id text not null,
    sha256 text not null,
    size_bytes bigint not null,
    recorded_at timestamptz not null default now(),
    primary key (model, version)
);
""",
    "model_monitoring": """
create schema if not exists ops;
create table if not exists ops.model_monitoring (
    id bigserial primary key,
    model text not null,
    model_version text,
    as_of_date date not null,
    check_name text not null,
    subject text not null,
    value double precision,
    threshold double precision,
    breach boolean not null,
    detail text not null,
    airflow_run_id text,
    checked_at timestamptz not null default now()
);
create index if not exists model_monitoring_model_idx on ops.model_monitoring (model, as_of_date);
""",
    "extract": """
create schema if not exists ops;
-- How far each source table has been loaded: the cursor value and key of the last row of the last batch that
-- committed (moved in the same transaction as the batch's rows, so it never runs ahead of them).
create table if not exists ops.extract_cursors (
    source text not null,
    source_table text not null,
    cursor_value timestamptz not null,
    cursor_key jsonb not null,
    rows_loaded bigint not null default 0,
    batches bigint not null default 0,
    updated_at timestamptz not null default now(),
    primary key (source, source_table)
);
""",
}


def ensure(conn: psycopg.Connection, *tables: str) -> None:
    """Create the named groups of ops tables (keys of DDL) if they do not exist yet."""
    for name in tables:
        create_if_missing(conn, DDL[name])


def promotions(conn: psycopg.Connection, model: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Promotion decisions, newest first (of one model, or of all); empty before the first one."""
    return frame(conn,
                 "select decided_at, model, from_version, to_version, stage, decision, reason, decided_by, gates"
                 " from ops.model_promotions where %(model)s::text is null or model = %(model)s"
                 " order by id desc limit %(limit)s", {"model": model, "limit": limit},
                 requires="ops.model_promotions")


def latest_monitoring(conn: psycopg.Connection, model: str, version: str | None = None) -> pd.DataFrame:
    """Every check and the decision of the model's newest monitoring run with a decision (recorded once acted
    on, after its checks: the rows of one Airflow run, or of one transaction outside Airflow), about `version`
    when given (what serves: a check from before it served says nothing about it); empty before."""
    return frame(conn,
                 "with decision as (select id, airflow_run_id, checked_at from ops.model_monitoring"
                 " where model = %(model)s and check_name = 'decision'"
                 " and (%(version)s::text is null or model_version = %(version)s) order by id desc limit 1)"
                 " select m.as_of_date, m.model_version, m.check_name, m.subject, m.value, m.threshold, m.breach,"
                 " m.detail from ops.model_monitoring m join decision d on m.id = d.id"
                 " or (m.model = %(model)s and m.check_name <> 'decision' and (m.airflow_run_id = d.airflow_run_id"
                 " or (d.airflow_run_id is null and m.airflow_run_id is null and m.checked_at = d.checked_at)))"
                 " order by m.id",
                 {"model": model, "version": version}, requires="ops.model_monitoring")


def latest_monitoring_decisions(conn: psycopg.Connection) -> pd.DataFrame:
    """The newest monitoring decision of each model; empty before the first one."""
    return frame(conn,
                 "select distinct on (model) model, model_version, as_of_date, subject, detail"
                 " from ops.model_monitoring where check_name = 'decision' order by model, id desc",
                 requires="ops.model_monitoring")


def ingest_summary(conn: psycopg.Connection) -> pd.DataFrame:
    """Per feed: files loaded, rows loaded, rows quarantined, files rejected (from the ledger)."""
    return frame(conn,
                 "select feed, count(*) filter (where status = 'loaded') as files,"
                 " coalesce(sum(rows_loaded), 0) as rows_loaded, coalesce(sum(rows_quarantined), 0) as quarantined,"
                 " count(*) filter (where status = 'rejected') as rejected"
                 " from ops.ingest_files group by feed order by feed", requires="ops.ingest_files")


def quality_runs(conn: psycopg.Connection, runs: int) -> pd.DataFrame:
    """Each suite's newest `runs` runs, newest first: suite, run_id, checked_at, expectations passed, failed and
    failed critical ones. A run is one recorded batch (a retry of the same Airflow run records a batch of its own)."""
    return frame(conn,
                 "with batch as (select suite, run_id, checked_at, count(*) filter (where success) as passed,"
                 " count(*) filter (where not success) as failed,"
                 " count(*) filter (where not success and severity = 'critical') as failed_critical,"
                 " row_number() over (partition by suite order by checked_at desc) as n"
                 " from ops.dq_results group by suite, run_id, checked_at)"
                 " select suite, run_id, checked_at, passed, failed, failed_critical from batch where n <= %(runs)s"
                 " order by suite, checked_at desc", {"runs": runs}, requires="ops.dq_results")


def quality_checks(conn: psycopg.Connection) -> pd.DataFrame:
    """Every expectation of each suite's newest run, in the order it ran."""
    return frame(conn,
                 "with newest as (select distinct on (suite) suite, checked_at from ops.dq_results"
                 " order by suite, checked_at desc)"
                 " select d.suite, d.expectation, d.kwargs, d.severity, d.success, d.unexpected_count,"
                 " d.unexpected_percent, d.observed_value from ops.dq_results d join newest using (suite, checked_at)"
                 " order by d.suite, d.id", requires="ops.dq_results")
