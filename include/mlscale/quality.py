"""Great Expectations suites kept as data (include/gx/*.yml), run against PostgreSQL, recorded in ops.dq_results."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml

from mlscale.config import Settings

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning")

RESULTS_DDL = """
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
"""


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
    """Read and check a suite file; errors name the file and the entry."""
    spec = yaml.safe_load(path.read_text())
    for key in ("name", "table", "expectations"):
        if key not in spec:
            raise ValueError(f"{path}: missing key {key!r}")
    if "." not in spec["table"]:
        raise ValueError(f"{path}: table must be schema-qualified, got {spec['table']!r}")
    for i, exp in enumerate(spec["expectations"]):
        if exp.get("severity", "critical") not in SEVERITIES:
            raise ValueError(f"{path}: expectation {i}: severity must be one of {SEVERITIES}")
        _expectation_class(exp["type"])  # raises for an unknown expectation
    return spec


def _expectation_class(type_name: str):
    import great_expectations as gx

    cls_name = "".join(part.capitalize() for part in type_name.split("_"))
    cls = getattr(gx.expectations, cls_name, None)
    if cls is None:
        raise ValueError(f"unknown expectation type {type_name!r} (no gx.expectations.{cls_name})")
    return cls


def run_suite(settings: Settings, suite_path: Path) -> list[CheckResult]:
    """Validate the suite's table with GX (pushed down as SQL on PostgreSQL); return one result per expectation."""
    import great_expectations as gx

    spec = load_suite(suite_path)
    schema, table = spec["table"].split(".", 1)
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_postgres(
        name="warehouse", connection_string=settings.sqlalchemy_url(settings.warehouse_db)
    )
    asset = source.add_table_asset(name=spec["table"], table_name=table, schema_name=schema)
    batch_def = asset.add_batch_definition_whole_table("whole_table")
    suite = context.suites.add(gx.ExpectationSuite(name=spec["name"]))
    for exp in spec["expectations"]:
        suite.add_expectation(_expectation_class(exp["type"])(**exp.get("kwargs", {})))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=spec["name"], data=batch_def, suite=suite)
    )
    outcome = validation.run()
    results = []
    for exp, res in zip(spec["expectations"], _ordered(outcome, spec["expectations"])):
        r = res.result or {}
        observed = r.get("observed_value")
        results.append(
            CheckResult(
                expectation=exp["type"],
                kwargs=exp.get("kwargs", {}),
                severity=exp.get("severity", "critical"),
                success=bool(res.success),
                unexpected_count=r.get("unexpected_count"),
                unexpected_percent=r.get("unexpected_percent"),
                observed_value=None if observed is None else str(observed),
            )
        )
    return results


def _ordered(outcome, expectations: list[dict]):
    """GX results in the order of the suite file (GX may reorder them)."""
    pending = list(outcome.results)
    for exp in expectations:
        for i, res in enumerate(pending):
            cfg = res.expectation_config
            if cfg.type == exp["type"] and all(cfg.kwargs.get(k) == v for k, v in exp.get("kwargs", {}).items()):
                yield pending.pop(i)
                break
        else:
            raise RuntimeError(f"GX returned no result for {exp['type']} {exp.get('kwargs')}")


def record(settings: Settings, run_id: str, suite: str, results: list[CheckResult]) -> None:
    """Append results to ops.dq_results."""
    with psycopg.connect(settings.dsn(settings.warehouse_db)) as conn:
        conn.execute(RESULTS_DDL)
        conn.cursor().executemany(
            "insert into ops.dq_results (run_id, suite, expectation, kwargs, severity, success, unexpected_count,"
            " unexpected_percent, observed_value) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(run_id, suite, r.expectation, json.dumps(r.kwargs), r.severity, r.success, r.unexpected_count,
              r.unexpected_percent, r.observed_value) for r in results],
        )


def gate(settings: Settings, suite_name: str, run_id: str) -> dict[str, int]:
    """Run and record suite `suite_name`; raise DataQualityError when a critical expectation failed."""
    path = settings.gx_dir / f"{suite_name}.yml"
    results = run_suite(settings, path)
    record(settings, run_id, suite_name, results)
    for r in results:
        level = logging.INFO if r.success else (logging.ERROR if r.severity == "critical" else logging.WARNING)
        log.log(level, "%s %-8s %s %s unexpected=%s (%s%%) observed=%s", "PASS" if r.success else "FAIL",
                r.severity, r.expectation, r.kwargs, r.unexpected_count, r.unexpected_percent, r.observed_value)
    failed_critical = [r for r in results if not r.success and r.severity == "critical"]
    summary = {"passed": sum(r.success for r in results), "failed": sum(not r.success for r in results),
               "failed_critical": len(failed_critical)}
    if failed_critical:
        names = "; ".join(f"{r.expectation} {r.kwargs}" for r in failed_critical)
        raise DataQualityError(f"suite {suite_name} on {path.name}: {len(failed_critical)} critical expectation(s) failed: {names}")
    return summary
