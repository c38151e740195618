"""The Airflow UI in real headless Chromium: log in, every DAG listed without import errors, the ML models page.

The shop is built through Airflow (ingest_landing, warehouse_etl), churn_90d v1 is trained and promoted, then
score_churn_90d and business_report run through Airflow too. The DAGs are serialized into the metadata DB
(`airflow dags reserialize`, what the dag-processor does) and a real api-server serves the UI and the plugin.
Screenshots are kept in reports/test/browser/ (reports/test/<xdist worker>/browser/ under xdist).
"""

import os
import shutil
import subprocess

import pytest
import requests

from mlscale import postgres
from mlscale.airflow import dagrun
from mlscale.business import reporting
from mlscale.local import services
from mlscale.production import promotion
from mlscale.postgres import table_exists
from mlscale.specs import load_specs
from tests.e2e.conftest import FAST, MODEL, api_server, shop, train_version  # noqa: F401 (shop is a fixture)
from tests.helpers import drop_registered_model, port

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
    assert frame.get_by_text("Open the business report").is_visible()
    assert frame.locator(f"#model-{MODEL} table").first.inner_text().count("promoted") == 1  # the stage history
    page.screenshot(path=shots / "ml_models_page.png", full_page=True)
    assert (shots / "ml_models_page.png").stat().st_size > 10_000


def test_the_page_and_the_report_need_a_login_and_are_read_only(ui):
    url, password, _ = ui
    anonymous = requests.get(f"{url}/mlscale/models", allow_redirects=False, timeout=30)
    assert anonymous.status_code == 303 and "/auth/login?next=" in anonymous.headers["location"]
    assert requests.get(f"{url}/mlscale/report", allow_redirects=False, timeout=30).status_code == 303
    token = requests.post(f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=30).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    report = requests.get(f"{url}/mlscale/report", headers=headers, timeout=30)
    assert report.status_code == 200 and "<h1>Business report</h1>" in report.text
    assert requests.post(f"{url}/mlscale/models", headers=headers, timeout=30).status_code == 405
