"""The Airflow UI in real headless Chromium: log in, every DAG listed without import errors, the ML models page.

The shop is built through Airflow (ingest_landing, warehouse_etl), churn_90d v1 is trained and promoted, then
score_churn_90d and business_report run through Airflow too. The DAGs are serialized into the metadata DB
(`airflow dags reserialize`, what the dag-processor does) and a real api-server serves the UI and the plugin.
Screenshots are kept in reports/test/browser/ (reports/test/<xdist worker>/browser/ under xdist).
"""

import contextlib
import os
import re
import shutil
import subprocess
from datetime import date

import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from mlscale import postgres, registry
from mlscale.airflow import dagrun
from mlscale.business import reporting
from mlscale.local import services
from mlscale.production import promotion
from mlscale.postgres import table_exists
from mlscale.specs import load_specs
from tests.e2e.conftest import FAST, MODEL, api_server, shop, train_version  # noqa: F401 (shop is a fixture)
from tests.helpers import drop_registered_model, port, query

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
PORT = port(8096)  # this xdist worker's own
CHROMIUM = "/usr/bin/chromium"
# As root, on a closed network: no sandbox, no background connections (see the environment notes in the README).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def ui(shop):
    """churn_90d v1 in Production and scored, the business report written, the UI up; yields (URL, password)."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does it)")
    for name in load_specs():
        drop_registered_model(shop, name)
    with postgres.warehouse(shop) as conn:
        for table in ("ops.model_promotions", "ops.model_monitoring", "ml.predictions"):
            if table_exists(conn, table):
                conn.execute(f"delete from {table}")
    version = train_version(shop, FAST)
    assert promotion.promote(shop, FAST, version).decision == "promoted"
    for dag_id in (f"score_{MODEL}", "business_report"):
        dagrun.run_dag(shop, dag_id)
    assert (shop.reports_dir / reporting.FILENAME).exists()
    _only_the_bundle(set(dagrun.dag_bag(str(shop.root / "dags")).dag_ids))
    out = subprocess.run([str(services.BIN / "airflow"), "dags", "reserialize"], env={**os.environ, **shop.service_env()},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    with api_server(shop, PORT) as (url, password):
        yield url, password, version


def _only_the_bundle(dag_ids: set[str]) -> None:
    """Other tests run DAGs of their own spec copies, which stay in the shared test metadata DB: delete them."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.models import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        stale = [d for d in session.scalars(select(DagModel.dag_id)) if d not in dag_ids]
    for dag_id in stale:
        delete_dag(dag_id)


@pytest.fixture
def page(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def _log_in(page, url: str, password: str) -> None:
    page.goto(url)
    page.wait_for_url("**/auth/login**")
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(password)
    page.locator("button[type=submit]").click()
    page.wait_for_url(lambda u: "/auth/login" not in u)


def test_log_in_see_every_dag_and_read_production_on_the_ml_models_page(ui, page, stack):
    url, password, version = ui
    shots = stack.reports_dir / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    _log_in(page, url, password)

    expected = sorted(dagrun.dag_bag(str(stack.root / "dags")).dag_ids)
    assert "business_report" in expected and f"monitor_{MODEL}" in expected
    page.goto(f"{url}/dags")
    page.get_by_text(f"{len(expected)} Dags", exact=True).wait_for(timeout=30_000)
    for dag_id in expected:
        page.get_by_text(dag_id, exact=True).first.wait_for(timeout=30_000)
    page.screenshot(path=shots / "dags.png", full_page=True)
    # The UI's own session (the login cookie) reads the import errors: none.
    errors = page.request.get(f"{url}/api/v2/importErrors")
    assert errors.ok and errors.json()["total_entries"] == 0, errors.text()
    listed = page.request.get(f"{url}/api/v2/dags", params={"limit": 100}).json()
    assert sorted(d["dag_id"] for d in listed["dags"]) == expected

    page.goto(f"{url}/plugin/ml-models")  # the Browse > ML models menu entry
    frame = page.frame_locator("iframe")
    production = frame.locator(f"#model-{MODEL} b.version[data-role=production]")
    production.wait_for(timeout=60_000)
    assert production.inner_text() == f"v{version}"
    assert frame.locator(f"#model-{MODEL} b.version[data-role=staging]").inner_text() == "none"
    assert frame.locator(f"#model-{MODEL} .monitoring").inner_text() == f"No monitoring check has run on v{version} yet."
    assert frame.locator(f"#model-{MODEL} table").first.inner_text().count("promoted") == 1  # the stage history
    page.screenshot(path=shots / "ml_models_page.png", full_page=True)
    assert (shots / "ml_models_page.png").stat().st_size > 10_000


def _opens_a_tab(page, click) -> object:
    """The tab a click on a link opens (loaded), failing if none opens."""
    with page.context.expect_page(timeout=30_000) as opened:
        click()
    tab = opened.value
    tab.wait_for_load_state()
    return tab


def test_every_link_on_the_ml_models_page_works_from_inside_the_airflow_ui(ui, page, shop, stack):
    """Airflow frames the page in a sandbox that may not open windows: each link still opens its tab, where it
    lands on what it names (the report, MLflow, the version's run), and the report's own MLflow links work."""
    url, password, version = ui
    _log_in(page, url, password)
    page.goto(f"{url}/plugin/ml-models")
    frame = page.frame_locator("iframe")
    frame.locator(f"#model-{MODEL} b.version[data-role=production]").wait_for(timeout=60_000)
    links = frame.locator("a")
    # the report, the registry, the Production version and its run (nothing in Staging)
    assert links.count() == 4

    report = _opens_a_tab(page, lambda: frame.get_by_role("link", name="Open the business report").click())
    assert report.url == f"{url}/mlscale/report"
    assert report.locator("h1").inner_text() == "Business report"
    charts = report.locator("img")
    assert charts.count() >= 4 and all(charts.nth(i).evaluate("i => i.naturalWidth > 300") for i in range(charts.count()))
    # One scoring date so far: its revenue-at-risk chart shows the two weeks around it, not years.
    scored = query(shop, "select distinct as_of_date from ml.predictions")["as_of_date"].tolist()
    alt = report.locator('img[alt^="Revenue at risk"]').get_attribute("alt")
    first, last = (date.fromisoformat(d) for d in re.search(r"dates shown: (\S+) to (\S+)\)", alt).groups())
    assert len(scored) == 1 and first < scored[0] < last and 13 <= (last - first).days <= 14, alt
    run_id = registry.client(shop).get_model_version(MODEL, version).run_id
    run = _opens_a_tab(report, report.locator("table a").first.click)  # the versions table: its MLflow run
    assert run.url.startswith(shop.mlflow_uri) and f"/runs/{run_id}?workflowType=machine_learning" in run.url
    run.get_by_text(run_id).first.wait_for(timeout=60_000)  # MLflow's run page, showing this run

    # MLflow pages open in the classic machine-learning view, where the registry and its stages are.
    models = _opens_a_tab(page, lambda: frame.get_by_role("link", name="MLflow model registry").click())
    assert models.url == f"{shop.mlflow_uri}/#/models?workflowType=machine_learning"
    models.get_by_text("Registered Models", exact=True).first.wait_for(timeout=60_000)
    models.get_by_text(MODEL, exact=True).first.wait_for()

    serving = _opens_a_tab(page, lambda: frame.get_by_role("link", name="MLflow version").click())
    assert f"#/models/{MODEL}/versions/{version}?" in serving.url
    serving.get_by_text("Stage (deprecated)").first.wait_for(timeout=60_000)
    # The page fills in the aliases after the stage (a second request): wait for them, then read the whole page.
    aliases = "Aliases : @ production"
    with contextlib.suppress(PlaywrightTimeout):
        serving.wait_for_function(f"() => document.body.innerText.split(/\\s+/).join(' ').includes('{aliases}')",
                                  timeout=30_000)
    text = " ".join(serving.locator("body").inner_text().split())
    assert aliases in text and "Stage (deprecated) : Production" in text, text[:600]
    serving.screenshot(path=stack.reports_dir / "browser" / "mlflow_version.png", full_page=True)

    run = _opens_a_tab(page, lambda: frame.get_by_role("link", name="MLflow run").click())
    assert f"/runs/{run_id}?workflowType=machine_learning" in run.url
    run.get_by_text(run_id).first.wait_for(timeout=60_000)
    assert page.url.startswith(f"{url}/plugin/ml-models")  # the Airflow window stays on the page


def test_data_quality_results_read_with_the_network_off(ui, page, shop):
    """GX's Data Docs load their scripts and styles from public CDNs; the page and the report show every suite's
    newest run from ops.dq_results with nothing but the api-server reachable."""
    url, password, _ = ui
    off_site = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url)
               else (off_site.append(route.request.url), route.abort()))
    _log_in(page, url, password)
    suites = query(shop, "select suite, count(*) filter (where success) as passed,"
                         " count(*) filter (where not success) as failed from ops.dq_results"
                         " where checked_at = (select max(checked_at) from ops.dq_results d"
                         " where d.suite = ops.dq_results.suite) group by suite order by suite")
    assert len(suites) >= 4  # the raw and mart suites warehouse_etl ran
    for path in ("models", "report"):
        page.goto(f"{url}/mlscale/{path}")
        for r in suites.itertuples():
            summary = page.locator(f"#dq-{r.suite} summary").inner_text()
            assert summary.startswith(f"{r.suite}: {r.passed} passed, {r.failed} failed"), (path, summary)
            assert page.locator(f"#dq-{r.suite} tbody tr").count() == r.passed + r.failed
    assert off_site == []
