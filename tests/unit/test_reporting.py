"""The report's pieces without a database: headline numbers, tables, an empty warehouse."""

import re
from datetime import date, datetime, timedelta

import matplotlib.dates as mdates
import pandas as pd
import pytest

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
    # money in the landing contract's currency (a US shop's report said EUR before)
    report = reporting.render(reporting.ReportData(kpis={**EMPTY, "kpi_daily": daily}, summary=summary, models=[],
                                                   mlflow_uri="http://m", currency="USD"))
    text = re.sub(r"data:image/png;base64,[^\"]+", "", report)  # the charts, as PNG
    assert ">90 USD<" in text and ">8 USD<" in text and "EUR" not in text


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
    page = pages.render("models_page.html", csp=pages.PAGE_CSP, models=[models_page._model(model, "http://m")],
                        registry_link="http://m/#/models", report_exists=False, tile_items=[], quality_suites=[])
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    # The report runs no script; the page runs its own file only (static/links.js), never inline code.
    for html, policy, scripts in ((report, pages.CSP, 0), (page, pages.PAGE_CSP, 1)):
        assert html.count("<script") == scripts and "<img src=x" not in html
        assert html.count(escaped) >= 3  # description, reason, monitoring detail (and more)
        csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html).group(1)
        assert csp == policy.replace("'", "&#39;") and "default-src &#39;none&#39;" in csp
    assert "script-src" not in pages.CSP and pages.PAGE_CSP.endswith("script-src 'self'")
    assert '<script src="static/links.js" defer></script>' in page


def test_report_of_an_empty_warehouse_says_what_is_missing():
    model = {"name": "churn_90d", "description": "d", "task": "classification", "primary_metric": "roc_auc",
             "production": None, "staging": None, "versions": [], "promotions": [], "monitoring": None}
    page = reporting.render(reporting.ReportData(kpis=EMPTY, summary={}, models=[model], mlflow_uri="http://m"))
    assert "Production: <b>none</b>" in page
    assert "No matured predictions yet" in page and "No orders yet." in page
    assert not re.findall(r"<img", page)


@pytest.mark.parametrize(("dates", "shown_days"), [
    ([date(2026, 10, 22)], (14, 14)),  # one date: two weeks around it, not five years
    ([date(2026, 10, 8), date(2026, 10, 15), date(2026, 10, 22)], (14, 16)),  # a few dates
    (pd.date_range("2023-01-02", "2026-01-05", freq="W-MON").date.tolist(), (1095, 1260)),  # three years
])
def test_a_date_chart_reads_well_with_one_date_a_few_or_years_of_them(dates, shown_days):
    fig, ax = reporting._fig("Revenue at risk", "scoring date", "EUR")
    x = pd.to_datetime(pd.Series(dates))
    ax.plot(x, range(len(dates)), marker="o")
    reporting._dates(ax)
    fig.canvas.draw()  # ticks are placed at drawing time
    lo, hi = ax.get_xlim()
    assert shown_days[0] <= hi - lo <= shown_days[1]
    assert mdates.date2num(x.min()) >= lo and mdates.date2num(x.max()) <= hi  # every point is on the chart
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert 3 <= len(labels) <= 11, labels
    # The image's text alternative says which dates the axis shows (the browser test reads it off the report).
    shown = re.fullmatch(r"Revenue at risk \(dates shown: (\S+) to (\S+)\)", pages.chart(fig)["alt"])
    first, last = (date.fromisoformat(d) for d in shown.groups())
    assert first <= min(dates) and max(dates) <= last and shown_days[0] - 1 <= (last - first).days <= shown_days[1]


@pytest.mark.parametrize(("production", "says"), [
    ("1", "No monitoring check has run on v1 yet."), (None, "No Production version: nothing is monitored.")])
def test_the_monitoring_line_speaks_of_the_version_that_serves(production, says):
    """model_overview passes only a decision about the Production version (ops.latest_monitoring's `version`):
    without one, both pages say so plainly, and never print 'vNone'."""
    model = _model(production=production)
    report = reporting.render(reporting.ReportData(kpis=EMPTY, summary={}, models=[model], mlflow_uri="http://m"))
    page = pages.render("models_page.html", models=[models_page._model(model, "http://m")], registry_link="http://m/#/models",
                        report_exists=False, tile_items=[], quality_suites=[])
    for html in (report, page):
        assert says in html and "vNone" not in html


def test_data_quality_shows_each_expectation_of_each_suites_newest_run_and_its_trend():
    """The section both pages show from ops.dq_results: counts, each expectation's result, a trend oldest first;
    a suite with a failure opens; a check's arguments are text, never markup."""
    at = [datetime(2026, 12, d, 6, 0) for d in (1, 2, 3)]
    runs = pd.DataFrame({"suite": ["raw_orders"] * 3 + ["mart_x"], "run_id": ["r3", "r2", "r1", "m1"],
                         "checked_at": [at[2], at[1], at[0], at[2]], "passed": [1, 2, 2, 1], "failed": [1, 0, 0, 0],
                         "failed_critical": [1, 0, 0, 0]})
    checks = pd.DataFrame({
        "suite": ["mart_x", "raw_orders", "raw_orders"],
        "expectation": ["expect_column_values_to_not_be_null", "expect_column_values_to_not_be_null",
                        "expect_column_values_to_be_between"],
        "kwargs": [{"column": "<b>x</b>"}, {"column": "amount"}, {"column": "amount", "min_value": 0}],
        "severity": ["critical", "critical", "warning"], "success": [True, False, True],
        "unexpected_count": [0, 1250, 0], "unexpected_percent": [0.0, 12.5, 0.0], "observed_value": [None, None, None]})
    view = reporting.quality_view(runs, checks)
    assert [q["suite"] for q in view] == ["mart_x", "raw_orders"]
    raw = view[1]
    assert (raw["run_id"], raw["passed"], raw["failed"], raw["failed_critical"]) == ("r3", 1, 1, 1)
    assert [mark for _, mark in raw["trend"]] == ["✔", "✔", "✘1"]  # oldest first
    assert raw["trend"][2][0] == "2026-12-03 06:00: 1 passed, 1 failed"
    cells = [[c["text"] for c in row] for row in raw["checks"]["rows"]]
    assert cells[0] == ["expect_column_values_to_not_be_null", "column=amount", "critical", "FAIL", "1,250", "12.50", ""]
    assert cells[1][1:4] == ["column=amount, min_value=0", "warning", "pass"]

    page = pages.render("models_page.html", csp=pages.PAGE_CSP, models=[], registry_link="http://m/#/models", report_exists=False,
                        tile_items=[], quality_suites=view)
    report = reporting.render(reporting.ReportData(kpis=EMPTY, summary={}, models=[], mlflow_uri="http://m",
                                                   quality=view))
    for html in (page, report):
        assert ">Data quality<" in html
        assert '<details class="dq" id="dq-raw_orders" open>' in html and '<details class="dq" id="dq-mart_x">' in html
        assert "<b>raw_orders</b>: 1 passed, 1 failed (1 critical)" in html
        assert "column=&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    empty = reporting.render(reporting.ReportData(kpis=EMPTY, summary={}, models=[], mlflow_uri="http://m"))
    assert "No data-quality check has run yet" in empty
