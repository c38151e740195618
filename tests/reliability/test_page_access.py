"""The ML models page through a real Airflow api-server (RELIABILITY.md): it asks Airflow's auth manager what a
logged-in user may see (a user without view access gets 403 for the page and the report), and shows a model
description and a decision reason that hold markup as text, under a Content-Security-Policy with no script."""

import json
import os

import pytest
import requests
import yaml

from mlscale import ops, postgres
from mlscale.business import pages
from mlscale.deployment import write_airflow_passwords
from mlscale.specs import SPECS_DIR
from tests.e2e.conftest import MODEL, api_server
from tests.helpers import port

pytestmark = pytest.mark.reliability
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
AUTH_FILE = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
OPERATOR = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,analyst:viewer",  # as in .env
            "AIRFLOW_PASSWORDS": "admin:the-operators-admin-password,analyst:the-analysts-password"}  # pragma: allowlist secret
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory):
    """An api-server whose users are an admin, `analyst` (viewer) and `outsider` (no role), on specs where
    churn_90d's description holds markup; a promotion decision whose reason does too. The admin's and the
    analyst's passwords are the operator's, written as compose's api-server writes them (`mlscale
    airflow-passwords`); Airflow generates the outsider's. Yields (base URL, passwords by user)."""
    specs = tmp_path_factory.mktemp("specs")
    for path in SPECS_DIR.glob("*.yml"):
        data = yaml.safe_load(path.read_text())
        if path.stem == MODEL:
            data["description"] = HOSTILE
        (specs / path.name).write_text(yaml.safe_dump(data))
    passwords_file = write_airflow_passwords(OPERATOR, tmp_path_factory.mktemp("airflow") / "passwords.json")
    before = {k: os.environ.get(k) for k in ("MLSCALE_SPECS_DIR", "MLSCALE_AIRFLOW_USERS", AUTH_FILE)}
    os.environ.update({"MLSCALE_SPECS_DIR": str(specs), AUTH_FILE: str(passwords_file),
                       "MLSCALE_AIRFLOW_USERS": f"{OPERATOR['AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS']},outsider:"})
    with postgres.warehouse(stack) as conn:
        ops.ensure(conn, "model_promotions")
        row = conn.execute("insert into ops.model_promotions (model, to_version, stage, decision, candidate_metrics,"
                           " production_metrics, gates, reason, decided_by) values (%s, '1', 'Staging', 'rejected',"
                           " '{}', '{}', '{}', %s, 'test') returning id", (MODEL, HOSTILE)).fetchone()[0]
    try:
        with api_server(stack, port(8097)) as (url, _):
            yield url, json.loads(passwords_file.read_text())
    finally:
        for key, value in before.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        with postgres.warehouse(stack) as conn:
            conn.execute("delete from ops.model_promotions where id = %s", (row,))


def _token(url: str, user: str, password: str) -> requests.Response:
    return requests.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)


def _get(url: str, passwords: dict, user: str, path: str) -> requests.Response:
    token = _token(url, user, passwords[user])
    token.raise_for_status()
    return requests.get(f"{url}/mlscale/{path}", headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                        timeout=120, allow_redirects=False)


def test_the_operators_passwords_log_in_and_a_viewer_cannot_trigger_a_run(server):
    url, passwords = server
    assert passwords["admin"] == "the-operators-admin-password"  # pragma: allowlist secret
    assert [_token(url, "admin", pw).status_code for pw in ("admin", passwords["admin"])] == [401, 201]
    headers = {"Authorization": f"Bearer {_token(url, 'analyst', passwords['analyst']).json()['access_token']}"}
    assert requests.get(f"{url}/api/v2/dags", headers=headers, timeout=60).status_code == 200  # a viewer reads
    trigger = requests.post(f"{url}/api/v2/dags/ingest_landing/dagRuns", headers=headers, json={"logical_date": None},
                            timeout=60)
    assert trigger.status_code == 403  # and changes nothing


def test_a_user_without_view_access_is_refused_the_page_and_the_report(server):
    url, passwords = server
    for path in ("models", "report"):
        refused = _get(url, passwords, "outsider", path)
        assert refused.status_code == 403, (path, refused.status_code)
        assert refused.json()["detail"] == "outsider may not view ML models"


def test_the_page_shows_markup_as_text_under_a_policy_that_allows_only_its_own_script_file(server):
    url, passwords = server
    page = _get(url, passwords, "admin", "models")
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy.split("script-src")[1]
    assert policy.endswith("frame-ancestors 'self'") and "default-src 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # The one script is the page's own file; the description's <script> is text.
    assert page.text.count("<script") == 1 and '<script src="static/links.js" defer></script>' in page.text
    assert "<img src=x" not in page.text
    script = requests.get(f"{url}/mlscale/static/links.js", timeout=30)
    assert script.status_code == 200 and "window.top.document" in script.text
    assert page.text.count(ESCAPED) == 2  # the description and the decision's reason, as text
