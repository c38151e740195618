"""CI gates for a change to the bundle: dbt slim CI (build only what the change touches) and the model CI gate.

- `dbt_slim_ci` (`make dbt-ci`, `mlscale dbt-ci`): `dbt build --select state:modified+ --defer --state <base>`
  against the base branch's manifest, into schemas of its own (`<schema>_staging`, `<schema>_ml`, ... through
  the `ci` target), reading unmodified parents from the pipeline's relations; the schemas are dropped after.
- `model_ci` (`mlscale ci-model MODEL`): a small generated shop in a namespace of its own (databases `*_ci`,
  its own MLflow server), each spec trained and put through the Staging gate and the gate against its baseline
  that `promote_<model>` applies; a spec that would not pass fails with the gate's reason.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import sql

from mlscale import postgres
from mlscale.config import Settings

if TYPE_CHECKING:
    from mlscale.specs import ModelSpec

log = logging.getLogger(__name__)


class CiFailed(RuntimeError):
    """A CI gate did not pass; the message says which check and why."""


# --- dbt slim CI -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SlimCi:
    schema: str  # prefix of the schemas the build wrote (dropped unless kept)
    results: dict[str, str]  # unique_id -> status of every node the build ran (models, tests, seeds, snapshots)
    kept: bool


def base_state(settings: Settings, ref: str, workdir: Path) -> Path:
    """The manifest of `dbt_project/` at git `ref` (the code in production), parsed into `workdir/state`."""
    from mlscale.data.warehouse import dbt

    out = subprocess.run(["git", "-C", str(settings.root), "archive", "--format=tar", ref, "dbt_project"],
                         capture_output=True)
    if out.returncode != 0:
        raise CiFailed(f"cannot read dbt_project at {ref!r} ({out.stderr.decode(errors='replace').strip()}); "
                       "fetch the base branch (git fetch origin main) or pass --state DIR with its manifest.json")
    base = workdir / "base"
    base.mkdir()
    subprocess.run(["tar", "-x", "-C", str(base)], input=out.stdout, check=True)
    state = workdir / "state"
    dbt(dataclasses.replace(settings, root=base), "parse", "--target-path", str(state))
    return state


def dbt_slim_ci(settings: Settings, state: Path | None = None, base: str = "main", schema: str | None = None,
                keep: bool = False) -> SlimCi:
    """Build the models a change modified and their children into `<schema>_*`; parents come from production.

    `state` is a folder with the production manifest.json; without it, `base`'s dbt project is parsed for one.
    Fails (DbtFailed, with dbt's output) when a model or test of the change fails; the schemas go either way."""
    from mlscale.production import outcomes, scoring
    from mlscale.specs import load_specs
    from mlscale.data.warehouse import dbt

    schema = schema or f"ci_{uuid.uuid4().hex[:8]}"
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", schema):
        raise ValueError(f"CI schema {schema!r}: lower-case letters, digits and _ only (at most 41 characters)")
    with tempfile.TemporaryDirectory(prefix="mlscale-dbt-ci-") as tmp:
        state = Path(state) if state else base_state(settings, base, Path(tmp))
        if not (state / "manifest.json").exists():
            raise CiFailed(f"{state} has no manifest.json: pass the folder of the production manifest")
        scoring.create_tables(settings)  # the KPI marts read ml.predictions, which scoring creates
        target = Path(tmp) / "target"
        try:
            dbt(settings, "build", "--target", "ci", "--select", "state:modified+", "--defer", "--state", str(state),
                "--vars", outcomes.dbt_vars(load_specs()),
                "--target-path", str(target), env={"MLSCALE_DBT_CI_SCHEMA": schema})
            results = {r["unique_id"]: r["status"]  # not dbt's on-run-start hooks (operation.*)
                       for r in json.loads((target / "run_results.json").read_text())["results"]
                       if not r["unique_id"].startswith("operation.")}
        finally:
            if not keep:
                drop_ci_schemas(settings, schema)
    log.info("dbt slim CI built %d node(s) into %s_*: %s", len(results), schema, ", ".join(sorted(results)) or "none")
    return SlimCi(schema, results, keep)


def ci_schemas(settings: Settings, schema: str) -> list[str]:
    """The schemas a slim CI build with this prefix wrote (`<schema>_staging`, `<schema>_ops`, ...)."""
    with postgres.warehouse(settings) as conn:
        return [r[0] for r in conn.execute("select nspname from pg_namespace where nspname like %s order by 1",
                                           (schema.replace("_", r"\_") + r"\_%",))]


def drop_ci_schemas(settings: Settings, schema: str) -> None:
    """Drop every schema of a slim CI build."""
    names = ci_schemas(settings, schema)
    with postgres.warehouse(settings, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(name)))


# --- model CI gate -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelCheck:
    model: str
    source: str  # the spec file
    passed: bool
    version: str | None
    reason: str
    metrics: dict


def ci_settings(settings: Settings) -> Settings:
    """The model CI's own namespace next to the given one: databases `*_ci`, MLflow on port + 77, its own
    landing folder, so a CI run never touches the pipeline's warehouse or registry."""
    return dataclasses.replace(settings, db_suffix=f"{settings.db_suffix}_ci", mlflow_port=settings.mlflow_port + 77,
                               landing_dir=settings.state_dir / f"ci{settings.db_suffix}" / "landing",
                               reports_dir=settings.reports_dir / "ci")


def model_ci(settings: Settings, specs: list[tuple[str, "ModelSpec"]], shop=None, echo=print) -> list[ModelCheck]:
    """Build the small generated shop in the CI namespace, then train and gate each (source, spec); one
    ModelCheck each, in order.

    The MLflow server of the namespace is stopped at the end when this call started it; the CI warehouse
    stays for inspection (it is emptied at the start of the next run)."""
    from mlscale import postgres
    from mlscale.data import warehouse
    from mlscale.local import services
    from mlscale.local.datagen import ShopParams, generate
    from mlscale.data.ingest import ingest_landing

    ci = ci_settings(settings)
    shop = shop or ShopParams(customers=600, days=270, seed=7)
    postgres.ensure_databases(ci, [ci.warehouse_db, ci.mlflow_db])
    already_up = services.http_ok(f"{ci.mlflow_uri}/health")
    services.ensure_mlflow(ci)
    try:
        warehouse.drop_schemas(ci)
        shutil.rmtree(ci.landing_dir, ignore_errors=True)
        generate(shop, ci.landing_dir)
        ingest_landing(ci.dsn(ci.warehouse_db), ci.landing_dir)
        warehouse.run_etl(ci, "ci-model")
        echo(f"ci-model: shop of {shop.customers} customers over {shop.days} days built in {ci.warehouse_db}")
        checks = []
        for source, spec in specs:
            checks.append(check_spec(ci, spec, source))
            c = checks[-1]
            echo(f"  {'PASS' if c.passed else 'FAIL'} {c.model} ({c.source}): {c.reason}")
        return checks
    finally:
        if not already_up:
            services.stop_background(ci, f"mlflow{ci.db_suffix}")


def check_spec(ci: Settings, spec: "ModelSpec", source: str) -> ModelCheck:
    """Train `spec` on the CI warehouse from an empty registry, then the Staging gate and the gate against the
    baseline (`promotion.evaluate`, what promote_<model> runs first); nothing is made Production."""
    from mlscale import registry
    from mlscale.modeling import training
    from mlscale.production import promotion

    registry.forget(ci, spec.name)
    result = training.train(ci, spec, tags={"mlscale.production.ci": "true"})
    if not result["registered"]:
        return ModelCheck(spec.name, source, False, None, f"does not beat its baseline: {result['reason']}",
                          result.get("metrics", {}))
    decision = promotion.evaluate(ci, spec, result["version"], "ci-model")
    passed = decision.decision == "pending"
    return ModelCheck(spec.name, source, passed, result["version"], decision.reason, decision.candidate_metrics)
