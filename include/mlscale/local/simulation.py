"""Replay a shop's life in steps, and show what rolling retraining is worth against a frozen model.

Each step lands the step's daily files and runs what the DAGs run, through the same entry points:
ingest (`ingest_landing`), the ETL (`warehouse.run_etl`: raw gate, dbt build, feature gate), scoring
with the Production version (`score_<model>`), monitoring (`monitor_<model>`) and, when monitoring
asks, training (`train_<model>`) and the staged promotion (`promote_<model>`). The first model is also
kept aside, frozen: it is the policy of never retraining. Predictions are judged once their labels
mature, so after the last step the shop runs on for one label horizon (data only, no model changes)
and every step's predictions get their realised metric.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from mlscale import registry
from mlscale.business import reporting
from mlscale.data import warehouse
from mlscale.local import datagen
from mlscale.modeling import artifacts, evaluation, features, judging, training
from mlscale.production import monitoring, outcomes, promotion, scoring
from mlscale.config import Settings
from mlscale.data.ingest import ingest_landing
from mlscale.specs import ModelSpec

log = logging.getLogger(__name__)


def label_horizon_days(settings: Settings) -> int:
    """The dbt var label_horizon_days: how long a prediction waits for its label."""
    return int(yaml.safe_load((settings.dbt_project_dir / "dbt_project.yml").read_text())["vars"]["label_horizon_days"])


@dataclass(frozen=True)
class Scenario:
    """The shop and the world it lives in. Days count from the shop's start."""

    customers: int = 3000
    seed: int = 42
    history_days: int = 300  # before the first step; the first model is trained on them
    days: int = 182  # simulated after the history
    step_days: int = 7
    # Default: the competitor arrives 90 days before the first step: the first model's labels end one
    # label horizon before its test date, so they never saw it; models trained weeks later have.
    concept_drift_day: int | None = 210
    data_drift_day: int | None = None
    price_increase: float = 0.3

    @property
    def steps(self) -> int:
        return -(-self.days // self.step_days)

    def shop(self, tail_days: int) -> datagen.ShopParams:
        drift = datagen.Drift(data_drift_day=self.data_drift_day, price_increase=self.price_increase,
                              concept_drift_day=self.concept_drift_day)
        return datagen.ShopParams(customers=self.customers, seed=self.seed, drift=drift,
                                  days=self.history_days + self.steps * self.step_days + tail_days)


@dataclass
class Outcome:
    csv: Path
    png: Path
    table: pd.DataFrame  # one row per step
    frozen_version: str
    rolling_final: float  # mean realised metric over the last quarter of steps
    frozen_final: float
    seconds: float
    report: Path  # the business report of the replayed shop (reporting.report)


class _Replay:
    """The state of one replay: settings, spec, shop, and where it has got to."""

    def __init__(self, settings: Settings, spec: ModelSpec, scenario: Scenario, logfile: Path):
        self.settings, self.spec, self.scenario, self.logfile = settings, spec, scenario, logfile
        self.tail_days = label_horizon_days(settings) + scenario.step_days
        self.shop = scenario.shop(self.tail_days)

    @contextlib.contextmanager
    def quiet(self):
        """Library and task logs of a step go to the log file; the console keeps one line per step."""
        from mlscale.local.demo import output_to

        with output_to(self.logfile):
            yield

    def land_and_build(self, first: int, last: int, run_id: str) -> None:
        datagen.generate(self.shop, self.settings.landing_dir, range(first, last), progress_every=0)
        ingest_landing(self.settings.dsn(self.settings.warehouse_db), self.settings.landing_dir)
        warehouse.run_etl(self.settings, run_id)

    def retrain(self, reason: str, step: int) -> str:
        """train_<model> then promote_<model>; what happened, in a few words."""
        trained = training.train(self.settings, self.spec, tags={"mlscale.retrain_reason": reason[:5000],
                                                                  "mlscale.simulation_step": str(step)})
        if not trained["registered"]:
            return "candidate not registered (does not beat the baseline)"
        decision = promotion.promote(self.settings, self.spec, trained["version"])
        return f"v{decision.version} {decision.decision}"


def replay_settings(settings: Settings) -> Settings:
    """The replay's own namespace next to the given one: databases `*_sim`, its own MLflow server
    (port + 66) and landing folder, so a replay never touches the demo's warehouse or registry."""
    return dataclasses.replace(settings, db_suffix=f"{settings.db_suffix}_sim", mlflow_port=settings.mlflow_port + 66,
                               landing_dir=settings.state_dir / "simulation" / "landing",
                               reports_dir=settings.reports_dir / "simulation")


def reset(settings: Settings, spec: ModelSpec) -> None:
    """Start from nothing: empty warehouse, no registered versions, no landing files."""
    warehouse.drop_schemas(settings)
    registry.forget(settings, spec.name)
    shutil.rmtree(settings.landing_dir, ignore_errors=True)


def simulate(settings: Settings, spec: ModelSpec, scenario: Scenario, out_dir: Path, echo=print) -> Outcome:
    """Run the replay; write <out_dir>/<model>.csv and .png; return both policies' realised performance."""
    t0 = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    logfile = out_dir / f"{spec.name}.log"
    logfile.unlink(missing_ok=True)
    replay = _Replay(settings, spec, scenario, logfile)
    h, k = scenario.history_days, scenario.step_days
    echo(f"simulating {spec.name}: {scenario.customers} customers, {h} days of history, then {scenario.steps} "
         f"steps of {k} days (concept drift at day {scenario.concept_drift_day}, data drift at day "
         f"{scenario.data_drift_day}); task logs: {logfile}")
    with replay.quiet():
        reset(settings, spec)
        replay.land_and_build(0, h, "simulate-history")
        first = replay.retrain("first model", 0)
        frozen = registry.alias_version(settings, spec.name, "production")
    if frozen is None:
        raise RuntimeError(f"the first model was not promoted ({first}); see {logfile}")
    echo(f"  history: days 0-{h - 1} built, first model {first} (kept frozen as v{frozen}) "
         f"in {time.monotonic() - t0:.0f}s")

    rows = []
    for step in range(1, scenario.steps + 1):
        started = time.monotonic()
        end = h + step * k
        with replay.quiet():
            replay.land_and_build(end - k, end, f"simulate-step-{step}")
            scored = scoring.score(settings, spec)
            report = monitoring.monitor(settings, spec, f"simulate-step-{step}")
            monitoring.record_decision(settings, report.to_dict(), f"simulate-step-{step}")  # acted on just below
            outcome = replay.retrain(report.reason, step) if report.retrain else ""
        drift = [c for c in report.checks if c.check_name == "feature_psi"]
        worst = max(drift, key=lambda c: c.value) if drift else None
        rows.append({
            "step": step, "day": str(replay.shop.day(end - 1)), "as_of_date": scored["as_of_date"],
            "production_version": scored["version"], "customers": scored["rows"],
            "max_feature_psi": round(worst.value, 4) if worst else None, "max_psi_feature": worst.subject if worst else "",
            "prediction_psi": next((round(c.value, 4) for c in report.checks if c.check_name == "prediction_psi"), None),
            "breaches": len(report.breaches), "retrain": report.retrain,
            "reason": report.reason if report.breaches else "", "outcome": outcome,
            "seconds": round(time.monotonic() - started, 1),
        })
        echo(f"  step {step:>2}/{scenario.steps} {rows[-1]['day']} scored as-of {scored['as_of_date']} with "
             f"v{scored['version']}; {len(report.breaches)} breach(es)"
             + (f"; retrain -> {outcome}" if report.retrain else "") + f" ({time.monotonic() - started:.0f}s)")

    end = h + scenario.steps * k
    with replay.quiet():
        replay.land_and_build(end, end + replay.tail_days, "simulate-label-tail")
    echo(f"  labels: {replay.tail_days} more days landed so every step's predictions can be judged")
    table = pd.DataFrame(rows).merge(realised(settings, spec, frozen), on="as_of_date", how="left")
    metric = spec.primary_metric
    last = table.tail(max(1, len(table) // 4))
    with replay.quiet():
        business = reporting.report(settings, {spec.name: spec}, out_dir)
    outcome = Outcome(csv=out_dir / f"{spec.name}.csv", png=out_dir / f"{spec.name}.png", table=table,
                      frozen_version=frozen, rolling_final=float(last[f"rolling_{metric}"].mean()),
                      frozen_final=float(last[f"frozen_{metric}"].mean()), seconds=time.monotonic() - t0,
                      report=Path(business["path"]))
    table.to_csv(outcome.csv, index=False)
    plot(spec, scenario, replay.shop, table).savefig(outcome.png, dpi=110)
    echo(f"  realised {metric} over the last {len(last)} steps: rolling {outcome.rolling_final:.4f}, "
         f"frozen v{frozen} {outcome.frozen_final:.4f}; {outcome.csv}, {outcome.png}, {outcome.report} "
         f"({outcome.seconds / 60:.1f} min)")
    return outcome


def realised(settings: Settings, spec: ModelSpec, frozen: str) -> pd.DataFrame:
    """Per as-of date with matured labels: the metric of the predictions made then (rolling) and of the frozen model."""
    metric = spec.primary_metric
    labelled = features.labelled(settings, spec)
    model, _ = artifacts.load_verified(settings, spec.name, frozen)
    rows = []
    for as_of, rolling in outcomes.matured(settings, spec).groupby("as_of_date"):
        judged = labelled[labelled["as_of_date"] == pd.Timestamp(as_of)]
        rows.append({
            "as_of_date": str(as_of), "judged_customers": len(rolling),
            f"rolling_{metric}": evaluation.metric(metric, rolling["outcome"], rolling["score"]),
            f"frozen_{metric}": evaluation.metric(metric, judged[spec.label],
                                                  judging.predict(spec, model, judged[spec.feature_names])),
        })
    return pd.DataFrame(rows, columns=["as_of_date", "judged_customers", f"rolling_{metric}", f"frozen_{metric}"])


def plot(spec: ModelSpec, scenario: Scenario, shop: datagen.ShopParams, table: pd.DataFrame):
    """Realised metric per as-of date for both policies, with drift days, retrains and promotions marked."""
    from matplotlib.figure import Figure

    metric = spec.primary_metric
    fig = Figure(figsize=(9, 4.8))
    ax = fig.subplots()
    x = pd.to_datetime(table["as_of_date"])
    ax.plot(x, table[f"rolling_{metric}"], marker="o", ms=3, label="rolling retraining (monitor -> train -> promote)")
    ax.plot(x, table[f"frozen_{metric}"], marker="o", ms=3, ls="--", label="frozen first model")
    asked = table[table["retrain"].astype(bool) & ~table["outcome"].fillna("").str.contains("promoted")]
    ax.plot(pd.to_datetime(asked["as_of_date"]), asked[f"rolling_{metric}"], "x", color="grey", ms=8,
            label="retrain asked, candidate not promoted")
    changed = table["production_version"].ne(table["production_version"].shift()) & (table.index > 0)
    for _, row in table[changed].iterrows():
        ax.axvline(pd.Timestamp(row["as_of_date"]), color="green", alpha=0.5)
        ax.annotate(f" v{row['production_version']} in Production", (pd.Timestamp(row["as_of_date"]), 0.97),
                    xycoords=("data", "axes fraction"), color="green", fontsize=8, va="top")
    notes = []
    for day, what in ((scenario.concept_drift_day, "concept drift"), (scenario.data_drift_day, "data drift")):
        if day is None:
            continue
        when = pd.Timestamp(shop.day(day))
        if when >= x.min():
            ax.axvline(when, color="grey", ls=":")
            ax.annotate(f" {what}", (when, 0.03), xycoords=("data", "axes fraction"), color="grey", fontsize=8)
        else:
            notes.append(f"{what} on {when.date()}, before the first step")
    title = f"{spec.name}: realised {metric} of each week's predictions, judged once labels matured"
    ax.set(title=title + (f"\n({'; '.join(notes)})" if notes else ""), xlabel="as-of date of the predictions",
           ylabel=f"realised {metric}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
