"""Great Expectations suites kept as data (include/gx/*.yml), run on PostgreSQL, recorded in ops.dq_results.

A suite file names either a `table` or a `query`. With `scope: batch`, a table suite checks only
the rows of the landing files that the current warehouse_etl run claimed (see mlscale.data.warehouse),
so a bad delivery is caught even when the table's history dilutes it. In a query, `{batch}` is that
filter on _file_sha256 and `{run_id}` the quoted run id. A batch-scoped suite with no rows is skipped,
as is one with `skip_when_empty: true`; any other suite runs on what it selects, none included.
`contract_feed` prepends "not null" for every required column of that feed in the landing contract.
GX checks a query suite's rows in a copy the gate makes on the server (an unlogged table in ops: the query runs once,
and whether it selected any row is a look at the copy), or with `copy: false` through a view of the query in ops
(each check runs the query: for a cheap filter of many rows, as the feature mart's newest rows, where copying them
costs more than the checks); either exists while the gate runs.
`severity: critical` (the default) fails the run; `warning` is recorded and logged.
GX keeps each result under the run's id (its run name); `build_docs`, a step of its own after both gates of a run
(also when one failed), adds the run's pages to the GX Data Docs site under <state>/gx<suffix>/.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from psycopg import sql

from mlscale import ops, postgres
from mlscale.config import Settings
from mlscale.data.contract import load_contract

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning")
CONNECTION_VAR = "MLSCALE_GX_WAREHOUSE_URL"
# Counts without samples of the unexpected values: GX fetches each expectation's sample with a query of its own, and
# where nothing is unexpected that query reads every row to find none (at 100k customers, 15 scans of the 1.25M rows
# a daily run writes: 2.4 of the feature gate's 7.7 s). A suite that fails runs again for its samples (run_suites).
COUNTS_ONLY = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
RELATION_SCHEMA = "ops"
# The Data Docs index lists this many of the newest validation results (each warehouse_etl run adds about five):
# GX reads back every result it lists on each build, 5 ms each, so an unlimited index made each gate slower by
# every day's results (a year of daily runs: 13 s a gate). The pages of older results stay where they are.
DOCS_INDEX_RESULTS = 200


class DataQualityError(RuntimeError):
    """A critical expectation failed: the data must not flow further."""


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    kwargs: dict
    severity: str
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    observed_value: str | None


def load_suite(path: Path) -> dict:
    """Read and check a suite file, adding the contract's expectations; errors name the file and the entry."""
    spec = yaml.safe_load(path.read_text())
    for key in ("name", "expectations"):
        if key not in spec:
            raise ValueError(f"{path}: missing key {key!r}")
    if ("table" in spec) == ("query" in spec):
        raise ValueError(f"{path}: give exactly one of 'table' and 'query'")
    if "table" in spec and "." not in spec["table"]:
        raise ValueError(f"{path}: table must be schema-qualified, got {spec['table']!r}")
    if spec.get("scope", "all") not in ("all", "batch"):
        raise ValueError(f"{path}: scope must be 'all' or 'batch'")
    if not isinstance(spec.get("skip_when_empty", False), bool):
        raise ValueError(f"{path}: skip_when_empty must be true or false")
    if spec.get("skip_when_empty") and "query" not in spec:
        raise ValueError(f"{path}: skip_when_empty applies to a query suite (a table suite has no narrower scope)")
    if not isinstance(spec.get("copy", True), bool):
        raise ValueError(f"{path}: copy must be true or false")
    if "copy" in spec and "query" not in spec and spec.get("scope") != "batch":
        raise ValueError(f"{path}: copy applies to a query or batch suite (a table suite is checked in place)")
    if feed := spec.get("contract_feed"):
        contract = load_contract()
        if feed not in contract:
            raise ValueError(f"{path}: contract_feed {feed!r} is not a feed of the landing contract")
        spec["expectations"] = [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": c}} for c in contract[feed].required_columns
        ] + spec["expectations"]
    for i, exp in enumerate(spec["expectations"]):
        if exp.get("severity", "critical") not in SEVERITIES:
            raise ValueError(f"{path}: expectation {i}: severity must be one of {SEVERITIES}")
        try:
            _expectation_class(exp["type"])
        except ValueError as exc:
            raise ValueError(f"{path}: expectation {i}: {exc}") from None
    return spec


def _expectation_class(type_name: str):
    import great_expectations as gx

    cls_name = "".join(part.capitalize() for part in type_name.split("_"))
    cls = getattr(gx.expectations, cls_name, None)
    if cls is None:
        raise ValueError(f"unknown expectation type {type_name!r} (no gx.expectations.{cls_name})")
    return cls


def batch_filter(run_id: str) -> str:
    """SQL condition on _file_sha256: the files claimed by warehouse_etl run `run_id` (GX takes a query as text, so
    the run id is composed in as a literal by psycopg)."""
    return sql.SQL("_file_sha256 in (select sha256 from ops.ingest_files where etl_run_id = {})").format(
        sql.Literal(run_id)).as_string(None)


def _query(spec: dict, run_id: str) -> str | None:
    if "query" in spec:
        return spec["query"].replace("{batch}", batch_filter(run_id)).replace(
            "{run_id}", sql.Literal(run_id).as_string(None))
    if spec.get("scope") == "batch":
        return sql.SQL("select * from {} where {}").format(
            sql.Identifier(*spec["table"].split(".")), sql.SQL(batch_filter(run_id))).as_string(None)
    return None


def docs_dir(settings: Settings) -> Path:
    """Where the GX project (and its Data Docs site) lives."""
    return settings.state_dir / f"gx{settings.db_suffix}"


def docs_index(settings: Settings) -> Path:
    """The Data Docs page a person opens."""
    return docs_dir(settings) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _run_name(run_id: str) -> str:
    """The GX run name of run `run_id`: the id, with what a file name should not hold replaced (GX stores each result
    under validations/<suite>/<run name>/ and refuses a name with a slash; "." or ".." would name another folder)."""
    name = re.sub(r"[^A-Za-z0-9_.:+-]", "_", run_id)
    return "_" * max(len(name), 1) if set(name) <= {"."} else name  # "", "." or ".." name no folder of its own


def _context(settings: Settings):
    """The GX file context of the settings' project, without progress bars, its Data Docs index limited."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    os.environ[CONNECTION_VAR] = settings.sqlalchemy_url(settings.warehouse_db)
    context = gx.get_context(mode="file", project_root_dir=str(docs_dir(settings)))
    # A new GX project comes with a config variables file (a page of comments and an analytics `instance_id`, which
    # GX 1.24 sends nowhere), which GX reads and parses again on every look at its settings: 127 times in a gate of
    # three suites, 0.3 s. Without the file GX finds no variables at once. The connection string is a variable of the
    # environment, so the file holds nothing of ours; one with variables of its own is kept.
    variables = docs_dir(settings) / "gx" / "uncommitted" / "config_variables.yml"
    if variables.exists() and set(yaml.safe_load(variables.read_text()) or {}) <= {"instance_id"}:
        variables.unlink()
    # No progress bars: in a task log they are stderr lines that Airflow shows at error level.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    site = context.variables.data_docs_sites["local_site"]
    if site["site_index_builder"].get("validation_results_limit") != DOCS_INDEX_RESULTS:
        site["site_index_builder"]["validation_results_limit"] = DOCS_INDEX_RESULTS
        context.update_data_docs_site("local_site", site)
    return context


def run_suites(settings: Settings, specs: list[dict], run_id: str) -> dict[str, list[CheckResult] | None]:
    """Validate the suites with GX (pushed down as SQL) in one context and one checkpoint, their results stored
    under the run's name; a suite whose batch has no rows maps to None."""
    import great_expectations as gx

    context = _context(settings)
    # The connection string stays a ${variable} in the project files: no credentials on disk. GX checks tables in
    # place (its SQL runs on the server, nothing is held in this process): a suite's table, or for a query the
    # gate's own relation of it (`_relation`: a copy of its rows, or a view).
    source = context.data_sources.add_or_update_postgres(name="warehouse_direct", connection_string="${" +
                                                         CONNECTION_VAR + "}", create_temp_table=False)
    results: dict[str, list[CheckResult] | None] = {}
    validations, relations = [], []
    try:
        for spec in specs:
            if (query := _query(spec, run_id)) is None:
                schema, table = spec["table"].split(".", 1)
            else:
                relations.append(relation := _relation(settings, spec["name"], run_id, query, spec.get("copy", True)))
                schema, table = RELATION_SCHEMA, relation[1]
                skippable = spec.get("scope") == "batch" or spec.get("skip_when_empty", False)
                if skippable and _is_empty(settings, table):
                    log.info("suite %s: its query selects no rows in this run, nothing to check", spec["name"])
                    results[spec["name"]] = None
                    continue
            if spec["name"] in source.get_asset_names():
                source.delete_asset(spec["name"])
            asset = source.add_table_asset(name=spec["name"], table_name=table, schema_name=schema)
            suite = gx.ExpectationSuite(name=spec["name"])
            for exp in spec["expectations"]:
                suite.add_expectation(_expectation_class(exp["type"])(**exp.get("kwargs", {})))
            # An earlier run's validation definition may name an asset GX cannot read back to update (of a source an
            # earlier version of this module used): each run writes its own.
            store = context.validation_definition_store
            if store.has_key(key := store.get_key(name=spec["name"], id=None)):
                store.remove_key(key)
            validations.append(context.validation_definitions.add(gx.ValidationDefinition(
                name=spec["name"], data=asset.add_batch_definition_whole_table("all_rows"),
                suite=context.suites.add_or_update(suite))))
        if validations:
            _check(context, specs, validations, results, run_id)
    finally:
        _drop(settings, relations)
    return results


def _relation(settings: Settings, suite: str, run_id: str, query: str, copy: bool) -> tuple[str, str]:
    """Create the relation in RELATION_SCHEMA that GX checks `suite` through in run `run_id`: ("table", name) holding
    the query's rows (`copy`: the query runs once, its rows written unlogged) or ("view", name) of the query (each
    check runs it). One per suite and run, so two runs that check at once never read each other's rows; dropped
    when the gate ends (`_drop`)."""
    kind, create = ("table", "create unlogged table") if copy else ("view", "create view")
    name = f"gx_{suite}_{hashlib.sha256(run_id.encode()).hexdigest()[:10]}_{'copy' if copy else 'view'}"
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "dq_results")  # the ops schema
        conn.execute(sql.SQL(f"drop {kind} if exists {{name}}; {create} {{name}} as {{query}}").format(
            name=sql.Identifier(RELATION_SCHEMA, name), query=sql.SQL(query)))
    return kind, name


def _is_empty(settings: Settings, relation: str) -> bool:
    with postgres.warehouse(settings) as conn:
        return conn.execute(sql.SQL("select not exists (select from {})").format(
            sql.Identifier(RELATION_SCHEMA, relation))).fetchone()[0]


def _drop(settings: Settings, relations: list[tuple[str, str]]) -> None:
    if not relations:  # a gate of table suites made none
        return
    with postgres.warehouse(settings) as conn:
        for kind, name in relations:
            conn.execute(sql.SQL(f"drop {kind} if exists {{}}").format(sql.Identifier(RELATION_SCHEMA, name)))


def _check(context, specs: list[dict], validations: list, results: dict, run_id: str) -> None:
    """Run the validations in one checkpoint (counts only; a failed suite again for its samples) and put each
    suite's results in `results` in the order of its file."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    name, run = "+".join(v.name for v in validations), RunIdentifier(run_name=_run_name(run_id))
    run_results = dict(context.checkpoints.add_or_update(gx.Checkpoint(
        name=name, validation_definitions=validations, result_format=COUNTS_ONLY)).run(run_id=run).run_results)
    failed = {key: res.suite_name for key, res in run_results.items() if not res.success}
    if failed:
        # A suite that failed runs again with GX's default format, so its Data Docs page shows up to 20 of the
        # values that failed each expectation; its counts-only result leaves the store (one page per suite and run).
        for key in failed:
            context.validation_results_store.remove_key(key)
            del run_results[key]
        again = [v for v in validations if v.name in failed.values()]
        run_results.update(context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"{name} failed", validation_definitions=again)).run(run_id=run).run_results)
    by_suite = {res.suite_name: res for res in run_results.values()}
    for spec in specs:
        if spec["name"] in by_suite:
            results[spec["name"]] = [_result(exp, res) for exp, res in
                                     zip(spec["expectations"], _ordered(by_suite[spec["name"]], spec["expectations"]))]


def build_docs(settings: Settings, run_id: str) -> Path | None:
    """Add run `run_id`'s validation results to the Data Docs site (their pages, their suites' pages, the index) and
    return the index; None when the run validated nothing.

    One build per run, after both gates, also when a gate failed (its page shows the failing values): GX compiles its
    page templates again on every build (0.4-0.5 s), which in each gate was a third of the gate at 100k customers."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    context = _context(settings)
    name = _run_name(run_id)
    keys = [key for key in context.validation_results_store.list_keys() if key.run_id.run_name == name]
    if not keys:  # an empty list would have GX build a page for every result it keeps
        log.info("GX Data Docs: run %s validated nothing, no page to add", run_id)
        return None
    checked = sorted({key.expectation_suite_identifier.name for key in keys})
    context.build_data_docs(resource_identifiers=[*keys, *(ExpectationSuiteIdentifier(name=n) for n in checked)])
    log.info("GX Data Docs: %d result(s) of run %s, index %s", len(keys), run_id, docs_index(settings))
    return docs_index(settings)


def _result(exp: dict, res) -> CheckResult:
    r = res.result or {}
    observed = r.get("observed_value")
    return CheckResult(
        expectation=exp["type"], kwargs=exp.get("kwargs", {}), severity=exp.get("severity", "critical"),
        success=bool(res.success), unexpected_count=r.get("unexpected_count"),
        unexpected_percent=r.get("unexpected_percent"), observed_value=None if observed is None else str(observed),
    )


def _ordered(outcome, expectations: list[dict]):
    """GX results in the order of the suite file (GX may reorder them)."""
    pending = list(outcome.results)
    for exp in expectations:
        for i, res in enumerate(pending):
            cfg = res.expectation_config
            if cfg.type == exp["type"].lower() and all(cfg.kwargs.get(k) == v for k, v in exp.get("kwargs", {}).items()):
                yield pending.pop(i)
                break
        else:
            raise RuntimeError(f"GX returned no result for {exp['type']} {exp.get('kwargs')}")


def record(settings: Settings, run_id: str, suite: str, results: list[CheckResult]) -> None:
    """Append results to ops.dq_results."""
    with postgres.warehouse(settings) as conn:
        ops.ensure(conn, "dq_results")
        conn.cursor().executemany(
            "insert into ops.dq_results (run_id, suite, expectation, kwargs, severity, success, unexpected_count,"
            " unexpected_percent, observed_value) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(run_id, suite, r.expectation, json.dumps(r.kwargs), r.severity, r.success, r.unexpected_count,
              r.unexpected_percent, r.observed_value) for r in results],
        )


def gate(settings: Settings, suite_names: str | list[str], run_id: str) -> dict[str, dict[str, int]]:
    """Run and record the suites; raise DataQualityError naming every failed critical expectation."""
    names = [suite_names] if isinstance(suite_names, str) else suite_names
    summary, failures = {}, []
    checked = run_suites(settings, [load_suite(settings.gx_dir / f"{name}.yml") for name in names], run_id)
    for name in names:
        results = checked[name]
        if results is None:
            summary[name] = {"skipped": 1}
            continue
        record(settings, run_id, name, results)
        for r in results:
            level = logging.INFO if r.success else (logging.ERROR if r.severity == "critical" else logging.WARNING)
            log.log(level, "%s %s %-8s %s %s unexpected=%s (%s%%) observed=%s", name, "PASS" if r.success else "FAIL",
                    r.severity, r.expectation, r.kwargs, r.unexpected_count, r.unexpected_percent, r.observed_value)
        failed = [r for r in results if not r.success and r.severity == "critical"]
        failures += [f"{name}: {r.expectation} {r.kwargs} (unexpected {r.unexpected_count}, observed {r.observed_value})"
                     for r in failed]
        summary[name] = {"passed": sum(r.success for r in results), "failed": sum(not r.success for r in results),
                         "failed_critical": len(failed)}
    if failures:
        raise DataQualityError(f"{len(failures)} critical expectation(s) failed:\n" + "\n".join(failures))
    return summary


def suites(settings: Settings, layer: str) -> list[str]:
    """The suites of a layer: `raw` (include/gx/raw_*.yml, before dbt) or `mart` (mart_*.yml, after it)."""
    if layer not in ("raw", "mart"):
        raise ValueError(f"layer must be 'raw' or 'mart', got {layer!r}")
    return sorted(p.stem for p in settings.gx_dir.glob(f"{layer}_*.yml"))
