"""The business report: what the shop is doing and what each model version is worth, as one HTML file.

`build_kpis` builds the KPI marts (dbt tag `kpi`: kpi_daily, kpi_churn_rate, kpi_retention_cohorts,
kpi_revenue_at_risk, kpi_model_value, kpi_model_lift) after scoring; `collect` reads them together with the
model registry, the promotion audit (`ops.model_promotions`), the monitoring log (`ops.model_monitoring`) and
the data-quality results (`ops.dq_results`); `render` writes self-contained HTML (templates/report.html: every
value escaped, no script, plots inline as PNG);
`report` does all three, writes `reports/business_report.html` and logs it to the MLflow experiment
`business_report`.
`model_overview` and `kpi_summary` also feed the Airflow "ML models" page (plugins/ml_models.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import matplotlib.dates as mdates
from matplotlib.figure import Figure

from mlscale import ops, postgres, registry, tracking
from mlscale.business import pages
from mlscale.production import outcomes, scoring
from mlscale.config import Settings
from mlscale.data import contract
from mlscale.specs import ModelSpec

log = logging.getLogger(__name__)

EXPERIMENT = "business_report"
FILENAME = "business_report.html"
KPI_TABLES = ("kpi_daily", "kpi_churn_rate", "kpi_retention_cohorts", "kpi_revenue_at_risk", "kpi_model_value",
              "kpi_model_lift")
RETENTION_MONTHS = 7  # cohort columns shown: months 0..6


# --- building and reading the marts --------------------------------------------------------------

def build_kpis(settings: Settings, specs: dict[str, ModelSpec]) -> str:
    """`dbt build --select tag:kpi` with the specs' campaigns; creates ml.predictions first if nothing was scored yet."""
    from mlscale.data.warehouse import dbt

    scoring.create_tables(settings)
    with outcomes.building(settings):  # it rebuilds int_matured_predictions, which monitoring may be building
        out = dbt(settings, "build", "--select", "tag:kpi", "--vars", outcomes.dbt_vars(specs))
    log.info("KPI marts built: %s", out.strip().splitlines()[-1].split("  ", 1)[-1] if out.strip() else "")
    return out


def dbt_docs(settings: Settings, specs: dict[str, ModelSpec]) -> Path:
    """`dbt docs generate --static` over every node, the KPI marts and the report's exposure included: one HTML
    file (`static_index.html` in the dbt target folder of the campaigns' vars) that opens in a browser without a
    server."""
    from mlscale.data.warehouse import dbt, target_path

    args = ("docs", "generate", "--static", "--select", "fqn:*", "--vars", outcomes.dbt_vars(specs))
    dbt(settings, *args)
    return target_path(settings, *args) / "static_index.html"


def read_kpis(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every KPI mart as a DataFrame (numbers as floats); a mart not built yet reads as empty."""
    out = {}
    with postgres.warehouse(settings) as conn:
        for table in KPI_TABLES:
            frame = postgres.frame(conn, f"select * from kpi.{table}", requires=f"kpi.{table}")
            for col in frame.columns:
                if frame[col].dtype == object and len(frame) and hasattr(frame[col].iloc[0], "as_integer_ratio"):
                    frame[col] = frame[col].astype(float)
            out[table] = frame
    return out


def kpi_summary(kpis: dict[str, pd.DataFrame]) -> dict:
    """The headline numbers: revenue of the last 30 days (and the 30 before), active customers, churn, risk, value."""
    out: dict = {}
    daily = kpis["kpi_daily"].sort_values("day") if len(kpis["kpi_daily"]) else None
    if daily is not None:
        out["last_day"] = str(daily["day"].iloc[-1])
        out["revenue_30d"] = round(float(daily["revenue"].tail(30).sum()), 2)
        out["revenue_prev_30d"] = round(float(daily["revenue"].iloc[-60:-30].sum()), 2)
        out["active_customers"] = int(daily["active_customers"].iloc[-1])
        out["new_customers_30d"] = int(daily["new_customers"].tail(30).sum())
    churn = kpis["kpi_churn_rate"]
    if len(churn):
        last = churn.sort_values("as_of_date").iloc[-1]
        out["churn_rate"], out["churn_as_of"] = float(last["churn_rate"]), str(last["as_of_date"])
    risk = kpis["kpi_revenue_at_risk"]
    if len(risk):
        last = risk.sort_values("as_of_date").iloc[-1]
        out.update(revenue_at_risk=float(last["revenue_at_risk"]), predicted_churners=int(last["predicted_churners"]),
                   risk_as_of=str(last["as_of_date"]),
                   revenue_at_risk_share=float(last["revenue_at_risk"] / last["scored_revenue_90d"])
                   if last["scored_revenue_90d"] else 0.0)
    value = kpis["kpi_model_value"]
    if len(value):
        out["value_by_model"] = {m: round(float(g["profit_uplift"].sum()), 2) for m, g in value.groupby("model")}
    return out


def value_by_version(kpis: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """kpi_model_value summed per (model, version): matured dates, targeted customers, profit, random, uplift."""
    value = kpis["kpi_model_value"]
    if not len(value):
        return pd.DataFrame(columns=["model", "model_version", "dates", "first_as_of", "last_as_of", "targeted_customers",
                                     "profit", "profit_random", "profit_uplift"])
    return (value.groupby(["model", "model_version"], as_index=False)
            .agg(dates=("as_of_date", "count"), first_as_of=("as_of_date", "min"), last_as_of=("as_of_date", "max"),
                 targeted_customers=("targeted_customers", "sum"), profit=("profit", "sum"),
                 profit_random=("profit_random", "sum"), profit_uplift=("profit_uplift", "sum"))
            .round(2).sort_values(["model", "first_as_of"]))


# --- the registry, the audit and the monitoring log ---------------------------------------------

def model_overview(settings: Settings, spec: ModelSpec, max_versions: int = 20) -> dict:
    """One model for people: Production/Staging versions, each version's test metrics and MLflow run,
    the promotion history and the latest monitoring decision about the Production version."""
    client = registry.client(settings)
    versions = []
    for mv in registry.model_versions(settings, spec.name)[:max_versions]:
        run = client.get_run(mv.run_id) if mv.run_id else None
        metrics = run.data.metrics if run else {}
        versions.append({
            "version": str(mv.version), "stage": mv.current_stage, "aliases": sorted(mv.aliases or []),
            "run_id": mv.run_id, "experiment_id": run.info.experiment_id if run else None,
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "data_as_of": (mv.tags or {}).get("mlscale.data_as_of", ""),
            "test_metrics": {k.removeprefix("test_"): metrics[k] for k in sorted(metrics) if k.startswith("test_")},
            "profit_uplift": metrics.get("business_profit_uplift"),
        })
    roles = {alias: next((v["version"] for v in versions if alias in v["aliases"]), None)
             for alias in ("production", "staging")}
    with postgres.warehouse(settings) as conn:
        promotions = ops.promotions(conn, spec.name).drop(columns="model", errors="ignore")
        monitoring = ops.latest_monitoring(conn, spec.name, roles["production"]) if roles["production"] else []
    status = None
    if len(monitoring):
        decision = monitoring[monitoring["check_name"] == "decision"].iloc[-1]
        checks = monitoring[monitoring["check_name"] != "decision"]
        status = {"as_of_date": str(decision["as_of_date"]), "version": decision["model_version"],
                  "retrain": bool(decision["breach"]), "reason": decision["detail"], "checks": len(checks),
                  "breaches": checks[checks["breach"]][["check_name", "subject", "value", "threshold", "detail"]]
                  .to_dict("records")}
    return {"name": spec.name, "description": spec.description, "task": spec.task, "primary_metric": spec.primary_metric,
            "production": roles["production"], "staging": roles["staging"], "versions": versions,
            "promotions": promotions.to_dict("records"), "monitoring": status}


QUALITY_RUNS = 14  # runs of each suite in the data-quality trend


def _on(kwargs: dict, width: int = 90) -> str:
    """What an expectation checks, from its kwargs: `column=amount, min_value=0` (long value sets cut)."""
    text = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def quality_view(runs: pd.DataFrame, checks: pd.DataFrame) -> list[dict]:
    """Each suite's newest run for people (ops.quality_runs, ops.quality_checks): its counts, every expectation
    with its result, and a trend of its recent runs (oldest first: ✔ all passed, ✘n n failed)."""
    view = []
    for suite, history in (runs.groupby("suite", sort=True) if len(runs) else []):
        newest, rows = history.iloc[0], checks[checks["suite"] == suite]
        table = pd.DataFrame({
            "expectation": rows["expectation"], "on": rows["kwargs"].map(_on), "severity": rows["severity"],
            "result": rows["success"].map({True: "pass", False: "FAIL"}), "unexpected rows": rows["unexpected_count"],
            "unexpected %": rows["unexpected_percent"], "observed": rows["observed_value"]})
        view.append({
            "suite": suite, "checked_at": f"{newest['checked_at']:%Y-%m-%d %H:%M}", "run_id": newest["run_id"],
            "passed": int(newest["passed"]), "failed": int(newest["failed"]),
            "failed_critical": int(newest["failed_critical"]),
            "checks": pages.table(table, formats={"unexpected rows": "{:,.0f}", "unexpected %": "{:.2f}"}),
            "trend": [(f"{r.checked_at:%Y-%m-%d %H:%M}: {r.passed} passed, {r.failed} failed",
                       "✔" if r.failed == 0 else f"✘{r.failed}") for r in history.iloc[::-1].itertuples()]})
    return view


def data_quality(settings: Settings) -> list[dict]:
    """The data-quality section of the report and the ML models page, from ops.dq_results (readable with no
    network, unlike GX's Data Docs site, whose pages load their scripts and styles from public CDNs)."""
    with postgres.warehouse(settings) as conn:
        return quality_view(ops.quality_runs(conn, QUALITY_RUNS), ops.quality_checks(conn))


# --- collecting and rendering --------------------------------------------------------------------

@dataclass
class ReportData:
    kpis: dict[str, pd.DataFrame]
    summary: dict
    models: list[dict]
    mlflow_uri: str
    currency: str = "EUR"  # of every money figure: the landing contract's (contract.currency)
    quality: list[dict] = field(default_factory=list)  # data_quality
    generated_at: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def collect(settings: Settings, specs: dict[str, ModelSpec]) -> ReportData:
    kpis = read_kpis(settings)
    return ReportData(kpis=kpis, summary=kpi_summary(kpis), models=[model_overview(settings, s) for s in specs.values()],
                      mlflow_uri=settings.mlflow_uri, currency=contract.currency(), quality=data_quality(settings))


def _fig(title: str, xlabel: str, ylabel: str, width: float = 7.5):
    fig = Figure(figsize=(width, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


MIN_DATE_WINDOW = 14  # days: a chart of one or a few dates shows at least two weeks around them


def _dates(ax) -> None:
    """Readable date ticks on the x axis, for one date, a few or years of them: data spanning less than
    MIN_DATE_WINDOW days is centred in a window of that width (matplotlib would widen a single date to years)."""
    lo, hi = ax.dataLim.intervalx
    if hi - lo < MIN_DATE_WINDOW:
        middle = (lo + hi) / 2
        ax.set_xlim(middle - MIN_DATE_WINDOW / 2, middle + MIN_DATE_WINDOW / 2)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _version(number: str | None) -> str:
    return f"v{number}" if number else "none"


def _money(v: float, currency: str) -> str:
    return f"{v:,.0f} {currency}"


def tiles(s: dict, currency: str) -> list[tuple[str, str, str]]:
    """The headline numbers of a KPI summary as (label, value, note) tiles, money in `currency`."""
    items = []
    if "revenue_30d" in s:
        change = (s["revenue_30d"] / s["revenue_prev_30d"] - 1) if s["revenue_prev_30d"] else None
        items.append(("Revenue, last 30 days", _money(s["revenue_30d"], currency),
                      f"{change:+.1%} on the 30 days before" if change is not None else f"to {s['last_day']}"))
        items.append(("Active customers", f"{s['active_customers']:,}", f"with a recent order, on {s['last_day']}"))
    if "churn_rate" in s:
        items.append(("Churn rate", f"{s['churn_rate']:.1%}", f"of customers active on {s['churn_as_of']} (90-day outcome)"))
    if "revenue_at_risk" in s:
        items.append(("Revenue at risk", _money(s["revenue_at_risk"], currency),
                      f"{s['predicted_churners']:,} predicted churners on {s['risk_as_of']} "
                      f"({s['revenue_at_risk_share']:.0%} of scored spend)"))
    for model, uplift in s.get("value_by_model", {}).items():
        items.append((f"Value added by {model}", _money(uplift, currency), "campaign profit over random targeting, to date"))
    return items


def _kpi_charts(k: dict[str, pd.DataFrame], currency: str) -> list[dict]:
    charts = []
    daily = k["kpi_daily"]
    if len(daily):
        daily = daily.sort_values("day")
        x = pd.to_datetime(daily["day"])
        fig, ax = _fig("Revenue per day", "day", currency)
        ax.bar(x, daily["revenue"], width=1.0, color="#9ecae1", label="revenue")
        ax.plot(x, daily["revenue"].rolling(7, min_periods=1).mean(), color="#08519c", label="7-day average")
        ax.legend()
        _dates(ax)
        charts.append(pages.chart(fig))
        fig, ax = _fig("Active customers (a recent order)", "day", "customers")
        ax.plot(x, daily["active_customers"], color="#31a354")
        _dates(ax)
        charts.append(pages.chart(fig))
    churn = k["kpi_churn_rate"]
    if len(churn):
        churn = churn.sort_values("as_of_date")
        fig, ax = _fig("Churn rate: active customers with no order in the next 90 days", "as-of date", "share")
        ax.plot(pd.to_datetime(churn["as_of_date"]), churn["churn_rate"], marker="o", ms=3, color="#de2d26")
        _dates(ax)
        charts.append(pages.chart(fig))
    risk = k["kpi_revenue_at_risk"]
    if len(risk):
        risk = risk.sort_values("as_of_date")
        fig, ax = _fig("Revenue at risk: last-90-day spend of predicted churners", "scoring date", currency)
        x = pd.to_datetime(risk["as_of_date"])
        ax.plot(x, risk["revenue_at_risk"], marker="o", ms=3, label="predicted churners")
        ax.plot(x, risk["expected_revenue_at_risk"], marker="o", ms=3, ls="--", label="probability-weighted, everyone")
        ax.legend()
        _dates(ax)
        charts.append(pages.chart(fig))
    return charts


def _retention(cohorts: pd.DataFrame) -> dict:
    """The cohort grid: months shown, and rows (cohort month, customers, cells {'text', 'alpha'} or None)."""
    months = list(range(RETENTION_MONTHS))
    if not len(cohorts):
        return {"months": months, "rows": []}
    grid = cohorts[cohorts["months_since_first_order"] < RETENTION_MONTHS].pivot(
        index=["cohort_month", "cohort_customers"], columns="months_since_first_order", values="retention_rate")
    rows = [(str(month)[:7], f"{int(size):,}",
             [{"text": f"{row[m]:.0%}", "alpha": float(row[m])} if m in row and row[m] == row[m] else None
              for m in months])
            for (month, size), row in grid.sort_index().iterrows()]
    return {"months": months, "rows": rows}


def _model_context(model: dict, k: dict[str, pd.DataFrame], mlflow_uri: str, currency: str) -> dict:
    name, metric = model["name"], model["primary_metric"]
    out = {"name": name, "description": model["description"], "production": _version(model["production"]),
           "serving": model["production"],
           "staging": _version(model["staging"]), "metric_chart": None, "value_chart": None, "lift_chart": None,
           "monitoring": model["monitoring"]}
    versions = [v for v in model["versions"] if metric in v["test_metrics"]]
    if versions:
        fig, ax = _fig(f"{metric} of each version on its test data (higher is better)" if metric != "rmse" else
                       f"{metric} of each version on its test data (lower is better)", "version", metric, width=6)
        values = [v["test_metrics"][metric] for v in reversed(versions)]
        bars = ax.bar([f"v{v['version']}" for v in reversed(versions)], values,
                      color=["#31a354" if "production" in v["aliases"] else "#bdbdbd" for v in reversed(versions)])
        ax.bar_label(bars, fmt="%.4f", fontsize=8)
        ax.set_ylim(min(values) * 0.9, max(values) * 1.05)  # differences between versions are small: zoom in
        out["metric_chart"] = pages.chart(fig)
    rows = pd.DataFrame([{
        "version": f"v{v['version']}", "role": ", ".join(v["aliases"]) or v["stage"].lower(), "trained on data to": v["data_as_of"],
        f"test {metric}": v["test_metrics"].get(metric), "expected uplift (test)": v["profit_uplift"],
        "MLflow run": registry.run_url(mlflow_uri, v["experiment_id"], v["run_id"])} for v in model["versions"]])
    out["versions"] = pages.table(rows, {f"test {metric}": "{:.4f}", "expected uplift (test)": "{:,.0f}"},
                                 links=("MLflow run",))

    value = value_by_version(k)
    value = value[value["model"] == name].drop(columns="model")
    if len(value):
        fig, ax = _fig("Campaign profit per Production version", "version", f"{currency} (matured scoring dates)", width=6)
        labels = [f"v{v}" for v in value["model_version"]]
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], value["profit"], width=0.4, label="targeted by the model")
        ax.bar([x + 0.2 for x in xs], value["profit_random"], width=0.4, label="random targeting", color="#bdbdbd")
        ax.set_xticks(list(xs), labels)
        ax.legend()
        out["value_chart"] = pages.chart(fig)
    value = value.assign(model_version="v" + value["model_version"]).rename(columns={
        "model_version": "version", "dates": "matured scoring dates", "first_as_of": "first", "last_as_of": "last",
        "targeted_customers": "customers contacted", "profit": f"profit ({currency})",
        "profit_random": f"at random ({currency})", "profit_uplift": f"value added ({currency})"})
    out["value"] = pages.table(value, {f"{c} ({currency})": "{:,.2f}" for c in ("profit", "at random", "value added")})

    lift = k["kpi_model_lift"]
    lift = lift[lift["model"] == name] if len(lift) else lift
    if len(lift):
        fig = Figure(figsize=(9, 3.4), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        for version, g in lift.sort_values("decile").groupby("model_version"):
            ax1.plot(g["decile"], g["lift"], marker="o", ms=3, label=f"v{version}")
            ax2.plot([0, *g["cumulative_share_contacted"]], [0, *g["cumulative_gain"]], marker="o", ms=3, label=f"v{version}")
        ax1.axhline(1, color="k", ls=":", label="random")
        ax2.plot([0, 1], [0, 1], "k:", label="random")
        ax1.set(title=f"Lift by score decile ({name})", xlabel="decile (1 = highest scores)", ylabel="lift")
        ax2.set(title=f"Cumulative gain ({name})", xlabel="share of customers contacted", ylabel="share of outcome")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        out["lift_chart"] = pages.chart(fig)

    promotions = pd.DataFrame(model["promotions"])
    if len(promotions):
        promotions = promotions[["decided_at", "from_version", "to_version", "stage", "decision", "decided_by", "reason"]]
        promotions["decided_at"] = promotions["decided_at"].map(lambda t: t.strftime("%Y-%m-%d %H:%M"))
    out["promotions"] = pages.table(promotions)
    return out


def render(data: ReportData) -> str:
    """The whole report as one HTML document (no external files, no scripts)."""
    return pages.render("report.html", generated_at=data.generated_at, tile_items=tiles(data.summary, data.currency),
                       kpi_charts=_kpi_charts(data.kpis, data.currency),
                       retention=_retention(data.kpis["kpi_retention_cohorts"]), quality=data.quality,
                       models=[_model_context(m, data.kpis, data.mlflow_uri, data.currency) for m in data.models])


def report(settings: Settings, specs: dict[str, ModelSpec], out_dir: Path | None = None, build: bool = True) -> dict:
    """Build the KPI marts, render the report to <out_dir>/business_report.html, log it to MLflow; return where."""
    import mlflow

    if build:
        build_kpis(settings, specs)
    data = collect(settings, specs)
    out_dir = out_dir or settings.reports_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILENAME
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render(data))
    tmp.replace(path)  # readers see the old report or the new one, never half of it
    with tracking.run(settings, EXPERIMENT, f"report {data.generated_at}") as run:
        mlflow.log_metrics({k: float(v) for k, v in data.summary.items() if isinstance(v, (int, float))})
        mlflow.log_metrics({f"value_{m}": v for m, v in data.summary.get("value_by_model", {}).items()})
        mlflow.log_artifact(str(path))
    log.info("business report written to %s and logged to MLflow run %s", path, run.info.run_id)
    return {"path": str(path), "run_id": run.info.run_id, "summary": data.summary}
