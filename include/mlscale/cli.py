"""`mlscale`: every step the DAGs run, reachable from the command line (run `mlscale --help`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from datetime import date
from pathlib import Path

from mlscale.config import settings
from mlscale.data.contract import load_contract


def _setup(args) -> None:
    from mlscale.local.setup import setup

    s = setup(settings())
    print(f"PostgreSQL  {s.pg_dsn}\nMLflow      {s.mlflow_uri}\nAirflow DB  {s.sqlalchemy_url(s.airflow_db)}")


def _dbt_manifest(args) -> None:
    from mlscale.local.services import build_dbt_manifest

    print(f"dbt manifest written: {build_dbt_manifest(settings())}")


def _env(args) -> None:
    for key, value in settings().service_env().items():
        print(f"export {key}={shlex.quote(value)}")


def _generate(args) -> None:
    from mlscale.local import datagen

    dirty = datagen.DirtyData(
        duplicate_rows=args.duplicate_rows, redelivered_files=args.redelivered_files, late_rows=args.late_rows,
        malformed_rows=args.malformed_rows, extra_column=args.extra_column, null_flood_day=args.null_flood_day,
    )
    params = datagen.ShopParams(customers=args.customers, days=args.days, seed=args.seed, start=args.start,
                                feeds=tuple(args.feeds.split(",")), dirty=dirty)
    days = range(args.from_day, args.to_day if args.to_day is not None else args.days)
    if args.to_db or args.to_stream:
        print(json.dumps(_generate_to_sources(args, params, days), indent=2))
        return
    stats = datagen.generate(params, args.out or settings().landing_dir, days)
    print(json.dumps(stats.__dict__, indent=2))


def _generate_to_sources(args, params, days: range) -> dict:
    """The shop into an operational database (products, customers, orders, lines) and/or its web sessions into an
    event stream, instead of landing files."""
    from mlscale.local import datagen
    from mlscale.sources import source
    from mlscale.sources.database import write_shop
    from mlscale.sources.stream import client, frame_events, publish

    s, written = settings(), {}
    if args.to_db:
        written[args.to_db] = write_shop(s, source(args.to_db), params, days)
    if args.to_stream:
        src = source(args.to_stream)
        pop, catalogue, r = datagen.population(params), datagen.products(params), client(s, src)
        feed = load_contract()[src.feed]
        written[args.to_stream] = {"events": sum(
            publish(r, src, frame_events(datagen.simulate_day(params, pop, catalogue, d)[src.feed], feed)) for d in days)}
    return written


def _extract(args) -> None:
    from mlscale.sources import source

    src = source(args.source)
    if src.kind == "database":
        from mlscale.sources.database import extract_tables

        print(json.dumps(extract_tables(settings(), src, args.table or None, args.full_refresh), indent=2))
    else:
        from mlscale.sources.stream import consume

        print(json.dumps(consume(settings(), src), indent=2))


def _ingest(args) -> None:
    from mlscale.data.ingest import ingest_landing

    s = settings()
    print(json.dumps(ingest_landing(s.dsn(s.warehouse_db), s.landing_dir), indent=2))


def _etl(args) -> None:
    from mlscale.data.warehouse import run_etl

    print(json.dumps(run_etl(settings(), f"cli-{int(time.time())}"), indent=2, default=str))


def _retract(args) -> None:
    from mlscale.data.ingest import retract_file

    s = settings()
    print(json.dumps({"rows_deleted": retract_file(s.dsn(s.warehouse_db), args.sha256, args.reason)}))


def _quality(args) -> None:
    from mlscale.data.quality import build_docs, gate

    s, run_id = settings(), f"cli-{int(time.time())}"
    try:
        print(json.dumps(gate(s, args.suite, run_id)))
    finally:
        build_docs(s, run_id)


def _train(args) -> None:
    from mlscale.specs import load_specs
    from mlscale.modeling.training import train

    print(json.dumps(train(settings(), load_specs()[args.model], tags={"mlscale.trigger": "cli"}), indent=2))


def _promote(args) -> None:
    from mlscale.production.promotion import decision_dict, promote
    from mlscale.specs import load_specs

    decision = promote(settings(), load_specs()[args.model], args.version, approved_by=args.approved_by)
    print(json.dumps(decision_dict(decision), indent=2))


def _rollback(args) -> None:
    from mlscale.production.promotion import decision_dict, rollback
    from mlscale.specs import load_specs

    print(json.dumps(decision_dict(rollback(settings(), load_specs()[args.model], args.version,
                                            decided_by=f"cli:{os.environ.get('USER', 'unknown')}",
                                            force=args.force, why=args.reason)), indent=2))


def _record_artifact(args) -> None:
    from mlscale.modeling.artifacts import record

    fetched = record(settings(), args.model, args.version)
    print(json.dumps({"model": args.model, "version": args.version, "artifact_sha256": fetched.sha256,
                      "artifact_bytes": fetched.size_bytes}, indent=2))


def _score(args) -> None:
    from mlscale.production.scoring import score
    from mlscale.specs import load_specs

    print(json.dumps(score(settings(), load_specs()[args.model], args.as_of), indent=2))


def _run_dag(args) -> None:
    from mlscale.airflow.dagrun import run_dag

    result = run_dag(settings(), args.dag_id, json.loads(args.conf) if args.conf else None)
    print(json.dumps(result.__dict__, indent=2))


def _demo(args) -> None:
    from mlscale.local import datagen
    from mlscale.local.demo import demo
    from mlscale.local.setup import setup

    t0 = time.monotonic()
    print("mlscale demo: setting up PostgreSQL, databases, Airflow metadata, dbt manifest, MLflow ...", flush=True)
    s = setup(settings())
    print(f"  services ready in {time.monotonic() - t0:.1f}s", flush=True)
    print(demo(s, datagen.ShopParams(customers=args.customers, days=args.days, seed=args.seed)))
    print(f"demo finished in {time.monotonic() - t0:.1f}s")


def _monitor(args) -> None:
    from mlscale.production.monitoring import monitor
    from mlscale.specs import load_specs

    print(json.dumps(monitor(settings(), load_specs()[args.model]).to_dict(), indent=2, default=str))


def _simulate(args) -> None:
    from mlscale.local.setup import setup
    from mlscale.local.simulation import Scenario, replay_settings, simulate
    from mlscale.specs import load_specs

    s = setup(replay_settings(settings()))
    scenario = Scenario(customers=args.customers, seed=args.seed, history_days=args.history_days, days=args.days,
                        step_days={"weekly": 7, "daily": 1}[args.step], concept_drift_day=args.concept_drift_day,
                        data_drift_day=args.data_drift_day)
    simulate(s, load_specs()[args.model], scenario, args.out or s.reports_dir)


def _report(args) -> None:
    from mlscale.business.reporting import report
    from mlscale.specs import load_specs

    out = report(settings(), load_specs(), args.out, build=not args.no_build)
    print(f"business report: {out['path']} (MLflow run {out['run_id']})")


def _dbt_docs(args) -> None:
    from mlscale.business.reporting import dbt_docs
    from mlscale.specs import load_specs

    print(f"dbt docs (every model, column, test and the report exposure): {dbt_docs(settings(), load_specs())}")


def _dbt_ci(args) -> None:
    from mlscale.production.ci import dbt_slim_ci

    result = dbt_slim_ci(settings(), state=args.state, base=args.base, schema=args.schema, keep=args.keep)
    print(f"dbt slim CI: {len(result.results)} node(s) built and tested in {result.schema}_*"
          + (" (kept)" if result.kept else " (dropped)"))
    for node, status in sorted(result.results.items()):
        print(f"  {status:<8} {node}")


def _ci_model(args) -> None:
    from mlscale import postgres
    from mlscale.production.ci import CiFailed, model_ci
    from mlscale.local.datagen import ShopParams
    from mlscale.specs import load_spec, load_specs

    shipped = load_specs()
    specs = []
    for name in args.models:
        if name.endswith((".yml", ".yaml")):
            specs.append((name, load_spec(Path(name))))
        elif name in shipped:
            specs.append((name, shipped[name]))
        else:
            raise CiFailed(f"no model spec {name!r}: one of {', '.join(sorted(shipped))}, or a spec file path")
    postgres.ensure_server(settings())
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # stdout: one line per model
    checks = model_ci(settings(), specs, ShopParams(customers=args.customers, days=args.days, seed=args.seed))
    failed = [c for c in checks if not c.passed]
    if failed:
        raise CiFailed(f"{len(failed)} of {len(checks)} model(s) would not be promoted: "
                       + "; ".join(f"{c.model} ({c.source}): {c.reason}" for c in failed))
    print(f"ci-model: all {len(checks)} model(s) pass the Staging gate and beat their baseline")


def _up(args) -> None:
    from mlscale.local.airflow_ui import up

    up(settings(), executor=args.executor)


def _down(args) -> None:
    from mlscale.local.airflow_ui import down

    down(settings())


def _spec_name(name: str) -> str:
    """A model argument: the name of a shipped spec, or a clear error naming the ones there are."""
    from mlscale.specs import load_specs, specs_dir

    known = sorted(load_specs())
    if name not in known:
        raise argparse.ArgumentTypeError(f"no model spec {name!r} in {specs_dir()} (there are: {', '.join(known)})")
    return name


def _optional_int(text: str) -> int | None:
    """A day number, or 'none'."""
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day number or 'none', got {text!r}") from None


def _deploy_check(args) -> None:
    from mlscale.deployment import CHECKED_PASSWORDS, check_secrets

    check_secrets(os.environ, CHECKED_PASSWORDS)
    print("secrets: the Fernet key, the JWT secret and the warehouse password are set and not placeholders")


def _airflow_passwords(args) -> None:
    from mlscale.deployment import write_airflow_passwords

    path = write_airflow_passwords(os.environ, Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]))
    print(f"Airflow passwords written to {path} for {os.environ['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS']}")


def _mlflow_account(args) -> None:
    from mlscale.deployment import ensure_mlflow_account

    for role in ("PIPELINE", "READER"):  # the pipeline writes (it creates the models); the reader reads only
        user = os.environ[f"MLSCALE_MLFLOW_{role}_USER"]
        done = ensure_mlflow_account(settings().mlflow_uri, user, os.environ[f"MLSCALE_MLFLOW_{role}_PASSWORD"])
        print(f"MLflow account {user!r} {done}")


def _day(text: str) -> date:
    """A date argument (YYYY-MM-DD)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlscale", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("setup", help="start/check PostgreSQL, create DBs, migrate Airflow, build dbt manifest, start MLflow").set_defaults(fn=_setup)
    sub.add_parser("env", help="print the environment (export lines) Airflow, dbt and MLflow use").set_defaults(fn=_env)

    g = sub.add_parser("generate", help="write a synthetic shop as daily landing files (streams day by day)")
    g.add_argument("--customers", type=int, default=3000)
    g.add_argument("--days", type=int, default=300, help="length of the shop's history")
    g.add_argument("--from-day", type=int, default=0, help="first day to write (for daily deliveries)")
    g.add_argument("--to-day", type=int, default=None, help="day after the last one to write (default: --days)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--start", type=_day, default=date(2026, 1, 1))
    g.add_argument("--feeds", default=",".join(load_contract()), help="comma-separated feeds to write (orders is mandatory)")
    g.add_argument("--out", type=Path, default=None, help="landing folder (default: MLSCALE_LANDING_DIR)")
    g.add_argument("--duplicate-rows", type=float, default=0.0, help="share of order rows repeated in their file")
    g.add_argument("--redelivered-files", type=float, default=0.0, help="share of order files delivered twice")
    g.add_argument("--late-rows", type=float, default=0.0, help="share of orders delivered 1-3 days late")
    g.add_argument("--malformed-rows", type=float, default=0.0, help="share of order rows that are broken")
    g.add_argument("--extra-column", action="store_true", help="order files carry an unknown column")
    g.add_argument("--null-flood-day", type=int, default=None, help="day on which 95%% of orders lack a channel")
    g.add_argument("--to-db", metavar="SOURCE", help="write products, customers, orders and lines into the operational"
                   " database of this source (include/contracts/sources.yml, e.g. shop_db) as its application "
                   "would, instead of landing files")
    g.add_argument("--to-stream", metavar="SOURCE", help="publish the web sessions as events to the stream of this "
                   "source (e.g. web_events) instead of landing files")
    g.set_defaults(fn=_generate)

    x = sub.add_parser("extract", help="load a source of include/contracts/sources.yml into raw.* (what "
                                       "extract_<source> runs): a database incrementally, a stream's new events")
    x.add_argument("source")
    x.add_argument("--table", action="append", help="only this table of a database source (repeatable)")
    x.add_argument("--full-refresh", action="store_true", help="a database source: read every row again, from the "
                   "start (after rows were deleted outright, or a cursor column was rewritten)")
    x.set_defaults(fn=_extract)

    sub.add_parser("ingest", help="load new landing files into raw.* (what ingest_landing runs)").set_defaults(fn=_ingest)
    sub.add_parser("etl", help="claim the loaded files, raw gate, dbt build, feature gate, publish (what warehouse_etl"
                              " runs, in one process and without source freshness)").set_defaults(fn=_etl)
    rt = sub.add_parser("retract", help="take a loaded landing file back out of raw (e.g. one that fails the raw gate)")
    rt.add_argument("sha256", help="the file's sha256 (see ops.ingest_files / the failing check in the task log)")
    rt.add_argument("--reason", required=True)
    rt.set_defaults(fn=_retract)
    q = sub.add_parser("quality", help="run one GX suite from include/gx")
    q.add_argument("suite")
    q.set_defaults(fn=_quality)
    for name, fn, helptext in (("train", _train, "train a model spec"),
                               ("promote", _promote, "run the promotion gates and switch (approval: pass --approved-by)"),
                               ("rollback", _rollback, "put previous_production (or --version) back into Production"),
                               ("score", _score, "batch-score with the production version (and staging in shadow)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("model", type=_spec_name)
        if name in ("promote", "rollback"):
            p.add_argument("--version")
        if name == "promote":
            p.add_argument("--approved-by", help="who approved (required for specs with approval: required)")
        if name == "rollback":
            p.add_argument("--reason", required=True, help="why: recorded with the decision")
            p.add_argument("--force", metavar="REASON", help="put back a version that never served in Production "
                                                            "(the gates or a person rejected it); the reason is audited")
        if name == "score":
            p.add_argument("--as-of", type=_day)
        p.set_defaults(fn=fn)
    ra = sub.add_parser("record-artifact", help="trust a registered version's files as they are now: record their sha256"
                                               " (for versions registered before hashes were recorded)")
    ra.add_argument("model")
    ra.add_argument("version")
    ra.set_defaults(fn=_record_artifact)
    r = sub.add_parser("run-dag", help="run one DAG through Airflow (dag.test) against the metadata DB")
    r.add_argument("dag_id")
    r.add_argument("--conf", help="JSON run conf")
    r.set_defaults(fn=_run_dag)
    d = sub.add_parser("demo", help="set up everything and run the whole pipeline through Airflow")
    d.add_argument("--customers", type=int, default=3000)
    d.add_argument("--days", type=int, default=300)
    d.add_argument("--seed", type=int, default=42)
    d.set_defaults(fn=_demo)
    m = sub.add_parser("monitor", help="drift and realised performance of the Production version: the checks monitor_<model> "
                       "runs, recorded; only monitor_<model> in Airflow requests a retrain and records its decision")
    m.add_argument("model", type=_spec_name)
    m.set_defaults(fn=_monitor)
    sim = sub.add_parser("simulate", help="replay N days in steps (land, ETL, score, monitor, retrain, promote); "
                                          "rolling retraining against a frozen first model -> CSV and PNG")
    sim.add_argument("--days", type=int, default=182, help="days to simulate after the history")
    sim.add_argument("--step", choices=["weekly", "daily"], default="weekly")
    sim.add_argument("--model", type=_spec_name, default="churn_90d")
    sim.add_argument("--customers", type=int, default=3000)
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--history-days", type=int, default=300, help="days before the first step (first model)")
    sim.add_argument("--concept-drift-day", type=_optional_int, default=210,
                     help="day the drivers of churn change ('none' for no concept drift)")
    sim.add_argument("--data-drift-day", type=_optional_int, default=None, help="day prices rise by 30%% (data drift)")
    sim.add_argument("--out", type=Path, default=None, help="folder for the CSV, PNG and log (default: reports/simulation)")
    sim.set_defaults(fn=_simulate)
    rp = sub.add_parser("report", help="build the KPI marts and render the business report (what business_report runs)")
    rp.add_argument("--out", type=Path, default=None, help="folder for business_report.html (default: MLSCALE_REPORTS_DIR, reports/)")
    rp.add_argument("--no-build", action="store_true", help="render from the KPI marts as they are (no dbt build)")
    rp.set_defaults(fn=_report)
    sub.add_parser("dbt-docs", help="dbt docs generate --static: the warehouse documented in one HTML file"
                   ).set_defaults(fn=_dbt_docs)
    dc = sub.add_parser("dbt-ci", help="dbt slim CI: build the models modified since the base branch (and their "
                                       "children) into schemas of their own, parents deferred to production")
    dc.add_argument("--base", default="main", help="git ref of the production code (default: main)")
    dc.add_argument("--state", type=Path, default=None, help="folder with the production manifest.json (instead of --base)")
    dc.add_argument("--schema", default=None, help="prefix of the CI schemas (default: ci_<random>)")
    dc.add_argument("--keep", action="store_true", help="keep the CI schemas for inspection")
    dc.set_defaults(fn=_dbt_ci)
    cm = sub.add_parser("ci-model", help="model CI gate: build a small generated shop, train each spec, fail when one "
                                         "would not pass its Staging gate or beat its baseline")
    cm.add_argument("models", nargs="+", metavar="MODEL", help="spec name (include/models) or spec file path")
    cm.add_argument("--customers", type=int, default=600)
    cm.add_argument("--days", type=int, default=270)
    cm.add_argument("--seed", type=int, default=7)
    cm.set_defaults(fn=_ci_model)
    sub.add_parser("dbt-manifest", help="dbt parse into dbt_project/target/manifest.json, which Cosmos renders "
                   "warehouse_etl from (no database needed; the Dockerfile runs it)").set_defaults(fn=_dbt_manifest)
    sub.add_parser("deploy-check", help="compose: refuse to start without a valid Fernet key, a JWT secret and the "
                   "warehouse password (airflow-init runs it)").set_defaults(fn=_deploy_check)
    sub.add_parser("airflow-passwords", help="compose: write the simple auth manager's passwords file from "
                   "AIRFLOW_PASSWORDS (the api-server runs it)").set_defaults(fn=_airflow_passwords)
    sub.add_parser("mlflow-account", help="compose: create the pipeline's and the reader's MLflow accounts, as MLflow's admin "
                   "(mlflow-init runs it)").set_defaults(fn=_mlflow_account)
    u = sub.add_parser("up", help="start the Airflow UI (api-server, scheduler, dag-processor, triggerer)")
    u.add_argument("--executor", choices=["local", "celery"], default="local",
                   help="celery: CeleryExecutor with Redis and two Celery workers")
    u.set_defaults(fn=_up)
    sub.add_parser("down", help="stop what `up` and `setup` started").set_defaults(fn=_down)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.update(settings().service_env())  # before anything imports Airflow
    try:
        args.fn(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line for the person at the terminal
        logging.getLogger("mlscale").debug("failed", exc_info=True)
        print(f"mlscale {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
