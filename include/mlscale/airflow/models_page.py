"""The "ML models" page inside the Airflow UI (a FastAPI app the plugin in plugins/ml_models.py mounts).

For each model spec: the Production and Staging versions with their test metrics and MLflow runs, the latest
promotion decision with its gates, the stage history (ops.model_promotions), the monitoring status
(ops.model_monitoring), a KPI summary from the KPI marts, the data-quality results (ops.dq_results) and a link
to the business report. Read-only: it only reads the warehouse, MLflow and Airflow's pending approvals.
Every route needs an Airflow login (the UI's `_token` cookie or a bearer token; a browser without one is sent
to Airflow's login page and back) and asks Airflow's auth manager what that user may see: the page itself
(custom view `ML models`), and each model (read access to its DAGs). Pages are rendered with autoescape and
served with a Content-Security-Policy (mlscale.business.pages). Its new-tab links (the business report, MLflow)
open from the Airflow window, since the frame Airflow shows the page in may not open one (static/links.js, the
one script, served without login: it holds no data).

Airflow loads plugins in every process that parses a DAG file or runs a task, not only in the api-server, so
this module imports only what the app needs to exist: pandas and the report's code (matplotlib) are imported
by the routes that use them, which saves each task process about 1.3 s of CPU (measured: parsing
warehouse_etl.py in a fresh process 1.6 s with them at the top, 0.45 s without).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from mlscale import registry
from mlscale.business import pages
from mlscale.data import contract
from mlscale.local import services
from mlscale.config import settings
from mlscale.specs import load_specs

HISTORY_ROWS = 10
PAGE = "ML models"  # the custom view the auth manager is asked about (the plugin's menu item)
URL_ROUTE = "ml-models"  # the page's address in the Airflow UI: <base_url>/plugin/ml-models


def _airflow_url() -> str:
    """The Airflow UI's address, from its `[api] base_url` ("" when unset: links are then paths on this host)."""
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="").rstrip("/")


def page_url() -> str:
    """The ML models page in the Airflow UI."""
    return f"{_airflow_url()}/plugin/{URL_ROUTE}"


def pending_approvals() -> dict[str, dict]:
    """Per model, the promotion waiting for a person in Airflow's Required Actions (promote_<model>'s `approve`
    task, asked and not answered yet): its subject, since when, and the run; read from Airflow's metadata DB."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.dag_id, TaskInstance.run_id, HITLDetail.subject, HITLDetail.created_at)
            .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
            .where(TaskInstance.task_id == "approve", TaskInstance.dag_id.startswith("promote_"),
                   HITLDetail.responded_at.is_(None),
                   TaskInstance.state.in_((TaskInstanceState.DEFERRED, TaskInstanceState.AWAITING_INPUT)))
            .order_by(HITLDetail.created_at)).all()
    return {dag_id.removeprefix("promote_"): {
        "subject": subject, "since": f"{created:%Y-%m-%d %H:%M} UTC",
        "link": f"{_airflow_url()}/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/approve/required_actions"}
        for dag_id, run_id, subject, created in rows}


class LoginRequired(Exception):
    """The request carries no valid Airflow login."""


async def airflow_user(request: Request):
    """The logged-in Airflow user (the same check the Airflow REST API makes), else LoginRequired."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    try:
        return await get_user(request, None, await bearer_scheme(request))
    except HTTPException as exc:
        raise LoginRequired() from exc


def _version(model: dict, role: str, mlflow_uri: str) -> dict | None:
    number = model[role]
    version = next((v for v in model["versions"] if v["version"] == number), None)
    if version is None:
        return None
    return {**version, "metrics": ", ".join(f"{k} {v:.4f}" for k, v in version["test_metrics"].items() if "/" not in k),
            "link": registry.run_url(mlflow_uri, version["experiment_id"], version["run_id"]),
            "version_link": registry.version_url(mlflow_uri, model["name"], number)}


def _model(model: dict, mlflow_uri: str, pending: dict | None = None) -> dict:
    latest = dict(model["promotions"][0]) if model["promotions"] else None
    if latest:
        latest["decided_at"] = f"{latest['decided_at']:%Y-%m-%d %H:%M}"
        latest["gates"] = [(stage, {"passed": gate.get("passed"),
                                    "checks": [(name, c.get("passed")) for name, c in gate.get("checks", {}).items()]})
                           for stage, gate in (latest["gates"] or {}).items()]
    import pandas as pd

    history = pd.DataFrame(model["promotions"])
    if len(history):
        history = history.head(HISTORY_ROWS)[["decided_at", "from_version", "to_version", "stage", "decision",
                                              "decided_by"]].copy()
        history["decided_at"] = history["decided_at"].map(lambda t: t.strftime("%Y-%m-%d %H:%M"))
    return {"name": model["name"], "error": None, "description": model["description"],
            "roles": [(role, _version(model, role, mlflow_uri)) for role in ("production", "staging")],
            "latest": latest, "monitoring": model["monitoring"], "serving": model["production"], "pending": pending,
            "history": pages.table(history)}


def render_page(s=None, visible: set[str] | None = None) -> str:
    """The page for the models in `visible` (default: every spec)."""
    from mlscale.business import reporting

    s = s or settings()
    specs = {name: spec for name, spec in load_specs().items() if visible is None or name in visible}
    kpis = reporting.read_kpis(s)
    # The MLflow client retries a server that is down for minutes: ask its health endpoint first.
    registry_up = services.http_ok(f"{s.mlflow_uri}/health")
    down = f"The model registry at {s.mlflow_uri} does not answer; is the MLflow server running?"
    pending = pending_approvals()
    models = [_model(reporting.model_overview(s, spec), s.mlflow_uri, pending.get(name)) if registry_up
              else {"name": name, "error": down} for name, spec in specs.items()]
    return pages.render("models_page.html", csp=pages.PAGE_CSP, models=models,
                        registry_link=registry.ui_url(s.mlflow_uri, "models"),
                        report_exists=(s.reports_dir / reporting.FILENAME).exists(),
                        quality_suites=reporting.data_quality(s),
                        tile_items=reporting.tiles(reporting.kpi_summary(kpis), contract.currency()))


app = FastAPI(title="mlscale ML models", docs_url=None, redoc_url=None, openapi_url=None)
app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")  # the page's script: no data, no login


@app.exception_handler(LoginRequired)
async def _to_login(request: Request, exc: LoginRequired):
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


def security_headers(csp: str) -> dict[str, str]:
    return {"Content-Security-Policy": pages.header(csp), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}


def visible_models(user) -> set[str]:
    """The model specs `user` may see, through Airflow's auth manager (whichever is configured): view access to
    the page (custom view `ML models`, the plugin's menu item), then read access to each model's DAGs; 403
    without the first."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    auth = get_auth_manager()
    if not auth.is_authorized_custom_view(method="GET", resource_name=PAGE, user=user):
        raise HTTPException(status_code=403, detail=f"{user.get_name()} may not view {PAGE}")
    return {name for name in load_specs()
            if all(auth.is_authorized_dag(method="GET", details=DagDetails(id=f"{step}_{name}"), user=user)
                   for step in ("train", "promote", "score", "monitor"))}


@app.get("/models", response_class=HTMLResponse)
def models(user=Depends(airflow_user)) -> HTMLResponse:
    """The page (sync: FastAPI runs it in a worker thread, the database and MLflow calls block)."""
    return HTMLResponse(render_page(visible=visible_models(user)), headers=security_headers(pages.PAGE_CSP))


@app.get("/report")
def business_report(user=Depends(airflow_user)):
    if visible_models(user) != set(load_specs()):
        raise HTTPException(status_code=403, detail="the business report covers every model; "
                                                    f"{user.get_name()} may not see all of them")
    from mlscale.business import reporting

    path = settings().reports_dir / reporting.FILENAME
    if not path.exists():
        raise HTTPException(status_code=404, detail=f"no business report at {path}; run the business_report DAG")
    return FileResponse(path, media_type="text/html", headers=security_headers(pages.CSP))
