"""The report's pieces without a database: headline numbers, tables, an empty warehouse."""

import re
from datetime import date, timedelta

import pandas as pd

from mlscale.business import reporting

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
    frame = pd.DataFrame({"who": ["<b>x</b>", None], "n": [1.5, float("nan")], "run": ["http://h/#/r/1", None]})
    out = reporting.table_html(frame, {"n": "{:.2f}"}, links=("run",))
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "<b>x" not in out
    assert "<td>1.50</td>" in out and "nan" not in out and "None" not in out
    assert "<a href='http://h/#/r/1' target=_blank rel=noopener>open</a>" in out


def test_report_of_an_empty_warehouse_says_what_is_missing():
    model = {"name": "churn_90d", "description": "d", "task": "classification", "primary_metric": "roc_auc",
             "production": None, "staging": None, "versions": [], "promotions": [], "monitoring": None}
    page = reporting.render(reporting.ReportData(kpis=EMPTY, summary={}, models=[model], mlflow_uri="http://m"))
    assert "Production: <b>none</b>" in page
    assert "No matured predictions yet" in page and "No orders yet." in page
    assert not re.findall(r"<img", page)
