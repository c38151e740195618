"""The "ML models" page inside the Airflow UI (a FastAPI app the plugin in plugins/ml_models.py mounts).

For each model spec: the Production and Staging versions with their test metrics and MLflow runs, the latest
promotion decision with its gates, the stage history (ops.model_promotions), the monitoring status
(ops.model_monitoring), a KPI summary from the KPI marts, and a link to the business report. Read-only: it
only reads the warehouse and MLflow. Every route needs an Airflow login (the UI's `_token` cookie or a
bearer token); a browser without one is sent to Airflow's login page and back.
"""

from __future__ import annotations

import html

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from mlscale.business import reporting
from mlscale.local import services
from mlscale.config import settings
from mlscale.specs import load_specs

HISTORY_ROWS = 10


class LoginRequired(Exception):
    """The request carries no valid Airflow login."""


async def airflow_user(request: Request):
    """The logged-in Airflow user (the same check the Airflow REST API makes), else LoginRequired."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    try:
        return await get_user(request, None, await bearer_scheme(request))
    except HTTPException as exc:
        raise LoginRequired() from exc


def _gates(gates: dict) -> str:
    """Each gate of a promotion decision and its checks, passed or failed."""
    parts = []
    for stage, gate in (gates or {}).items():
        checks = ", ".join(f"{'✔' if c.get('passed') else '✘'} {html.escape(name)}" for name, c in gate.get("checks", {}).items())
        parts.append(f"<li><b>{html.escape(stage)}</b>: {'passed' if gate.get('passed') else 'failed'}"
                     f"{' (' + checks + ')' if checks else ''}</li>")
    return f"<ul>{''.join(parts)}</ul>" if parts else "<p class=empty>No gates recorded.</p>"


def _version_line(model: dict, role: str, mlflow_uri: str) -> str:
    number = model[role]
    version = next((v for v in model["versions"] if v["version"] == number), None)
    if version is None:
        return f"<p>{role.title()}: <b class=version data-role={role}>none</b></p>"
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in version["test_metrics"].items() if "/" not in k)
    link = f"{mlflow_uri}/#/experiments/{version['experiment_id']}/runs/{version['run_id']}"
    return (f"<p>{role.title()}: <b class=version data-role={role}>v{number}</b> · trained on data to "
            f"{html.escape(version['data_as_of'] or '?')} · registered {version['created']} · "
            f"<a href='{html.escape(link)}' target=_blank rel=noopener>MLflow run</a><br>"
            f"<small>test: {html.escape(metrics)}</small></p>")


def _unavailable(name: str, error: str) -> str:
    return (f"<section class=model id='model-{html.escape(name)}'><h2>{html.escape(name)}</h2>"
            f"<p class=error>{html.escape(error)}</p></section>")


def _model(model: dict, mlflow_uri: str) -> str:
    promotions = pd.DataFrame(model["promotions"])
    latest = model["promotions"][0] if model["promotions"] else None
    parts = [f"<section class=model id='model-{html.escape(model['name'])}'><h2>{html.escape(model['name'])}</h2>"
             f"<p>{html.escape(model['description'])}</p>",
             _version_line(model, "production", mlflow_uri), _version_line(model, "staging", mlflow_uri)]
    if latest:
        parts.append(f"<h3>Latest decision</h3><p>v{latest['to_version']} <b>{latest['decision']}</b> "
                     f"({latest['stage']}, {latest['decided_at']:%Y-%m-%d %H:%M}): {html.escape(latest['reason'])}</p>"
                     + _gates(latest["gates"]))
    status = model["monitoring"]
    if status:
        breaches = "".join(f"<li>{html.escape(b['check_name'])} {html.escape(str(b['subject']))}: "
                           f"{html.escape(b['detail'])}</li>" for b in status["breaches"])
        parts.append(f"<h3>Monitoring</h3><p class=monitoring>{status['as_of_date']}, v{status['version']}: "
                     f"{status['checks']} checks, {len(status['breaches'])} breached → "
                     f"<b>{'retrain requested' if status['retrain'] else 'keep'}</b></p>"
                     + (f"<ul>{breaches}</ul>" if breaches else ""))
    else:
        parts.append("<h3>Monitoring</h3><p class=empty>Not monitored yet.</p>")
    if len(promotions):
        history = promotions.head(HISTORY_ROWS)[["decided_at", "from_version", "to_version", "stage", "decision",
                                                 "decided_by"]].copy()
        history["decided_at"] = history["decided_at"].map(lambda t: t.strftime("%Y-%m-%d %H:%M"))
        parts.append("<h3>Stage history</h3>" + reporting.table_html(history))
    return "\n".join(parts) + "</section>"


def render_page(s=None) -> str:
    s = s or settings()
    specs = load_specs()
    kpis = reporting.read_kpis(s)
    # The MLflow client retries a server that is down for minutes: ask its health endpoint first.
    registry_up = services.http_ok(f"{s.mlflow_uri}/health")
    down = f"The model registry at {s.mlflow_uri} does not answer; is the MLflow server running?"
    models = {name: reporting.model_overview(s, spec) if registry_up else down for name, spec in specs.items()}
    report = s.reports_dir / reporting.FILENAME
    report_link = ("<a href='report' target=_blank>Open the business report</a>" if report.exists()
                   else "No business report yet: run the <code>business_report</code> DAG.")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>ML models</title>"
            f"<style>{reporting.STYLE}</style></head><body><h1>ML models</h1>"
            f"<p class=sub>{report_link} · <a href='{s.mlflow_uri}' target=_blank rel=noopener>MLflow</a></p>"
            f"{reporting.tiles_html(reporting.kpi_summary(kpis))}"
            + "".join(_unavailable(name, m) if isinstance(m, str) else _model(m, s.mlflow_uri) for name, m in models.items())
            + "</body></html>")


app = FastAPI(title="mlscale ML models", docs_url=None, redoc_url=None, openapi_url=None)


@app.exception_handler(LoginRequired)
async def _to_login(request: Request, exc: LoginRequired):
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


@app.get("/models", response_class=HTMLResponse)
def models(user=Depends(airflow_user)) -> str:
    """The page (sync: FastAPI runs it in a worker thread, the database and MLflow calls block)."""
    return render_page()


@app.get("/report")
def business_report(user=Depends(airflow_user)):
    path = settings().reports_dir / reporting.FILENAME
    if not path.exists():
        raise HTTPException(status_code=404, detail=f"no business report at {path}; run the business_report DAG")
    return FileResponse(path, media_type="text/html")
