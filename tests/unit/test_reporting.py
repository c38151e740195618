"""The report's pieces without a database: headline numbers, tables, an empty warehouse."""

import re
from datetime import date, datetime, timedelta

import pandas as pd

from mlscale.airflow import models_page
from mlscale.business import pages, reporting

EMPTY = {table: pd.DataFrame() for table in reporting.KPI_TABLES}


def test_summary_of_the_last_30_days_against_the_30_before():
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(90)]
    daily = pd.DataFrame({"day": days, "revenue": [1.0] * 30 + [2.0] * 30 + [3.0] * 30,
                          "active_customers": range(90), "new_customers": [1] * 90})
    value = pd.DataFrame({"model": ["m", "m", "n"], "profit_uplift": [10.0, -2.5, 4.0]})
    summary = reporting.kpi_summary({**EMPTY, "kpi_daily": daily, "kpi_model_value": value})
    assert summary["revenue_30d"] == 90.0 and summary["revenue_prev_30d"] == 60.0
    assert summary["active_customers"] == 89 and summary["last_day"] == "2026-03-31"
    assert summary["value_by_model"] == {"m": 7.5, "n": 4.0}
    assert "churn_rate" not in summary and "revenue_at_risk" not in summary


def test_tables_escape_text_blank_nulls_and_link_urls():
    frame = pd.DataFrame({"who": ["<b>x</b>", None], "n": [1.5, float("nan")], "run": ["http://h/#/r/1?a=1&b=2", None]})
    out = pages.ENV.from_string('{% from "_macros.html" import table %}{{ table(t) }}').render(
        t=pages.table(frame, {"n": "{:.2f}"}, links=("run",)))
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "<b>x" not in out
    assert "<td>1.50</td>" in out and "nan" not in out and "None" not in out
    assert '<a href="http://h/#/r/1?a=1&amp;b=2" target="_blank" rel="noopener">open</a>' in out


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _model(**update) -> dict:
    return {"name": "churn_90d", "description": "d", "task": "classification", "primary_metric": "roc_auc",
            "production": None, "staging": None, "versions": [], "promotions": [], "monitoring": None, **update}


def test_report_and_models_page_show_hostile_text_as_text_and_allow_no_script():
    """A description, a decision reason and a monitoring detail holding markup are shown as text, and both pages
    carry a Content-Security-Policy that allows no script (the report also as a file opened from disk)."""
    decided = {"decided_at": datetime(2026, 12, 3, 9, 0), "from_version": None, "to_version": "1", "stage": "Staging",
               "decision": "rejected", "decided_by": HOSTILE, "reason": HOSTILE,
               "gates": {"staging": {"passed": False, "checks": {HOSTILE: {"passed": False}}}}}
    monitoring = {"as_of_date": "2026-12-01", "version": "1", "retrain": True, "reason": HOSTILE, "checks": 1,
                  "breaches": [{"check_name": "feature_psi", "subject": HOSTILE, "value": 0.4, "threshold": 0.25,
                                "detail": HOSTILE}]}
    model = _model(description=HOSTILE, promotions=[decided], monitoring=monitoring)
    report = reporting.render(reporting.ReportData(kpis=EMPTY, summary={}, models=[model], mlflow_uri="http://m"))
    page = pages.render("models_page.html", models=[models_page._model(model, "http://m")], mlflow_uri="http://m",
                        report_exists=False, tile_items=[])
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    for html in (report, page):
        assert "<script" not in html and "<img src=x" not in html
        assert html.count(escaped) >= 3  # description, reason, monitoring detail (and more)
        csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
        assert csp == pages.CSP.replace("'", "&#39;") and "script-src" not in csp and "default-src 'none'" in pages.CSP


def test_report_of_an_empty_warehouse_says_what_is_missing():
    model = {"name": "churn_90d", "description": "d", "task": "classification", "primary_metric": "roc_auc",
             "production": None, "staging": None, "versions": [], "promotions": [], "monitoring": None}
    page = reporting.render(reporting.ReportData(kpis=EMPTY, summary={}, models=[model], mlflow_uri="http://m"))
    assert "Production: <b>none</b>" in page
    assert "No matured predictions yet" in page and "No orders yet." in page
    assert not re.findall(r"<img", page)
