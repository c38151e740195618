"""
### business_report — KPI marts and the business report

**Owner:** Business Analyst · **Triggered by:** the `ml.predictions` asset (a finished `score_<model>` run),
or by hand.

1. `build_kpis`: `dbt build --select tag:kpi` (models in `dbt_project/models/marts/kpi`, with their tests):
   daily revenue and active customers, realised churn rate, retention cohorts, revenue at risk from the churn
   model's scores, and per Production version the value its campaign delivered once outcomes matured (profit
   on its top-k customers against random targeting) with lift and gain by score decile. A failing dbt test
   fails the task and no report is written.
2. `render_report`: one self-contained HTML file, `reports/business_report.html` (plots inline; readable
   without access to anything else), also logged as an artifact of the MLflow experiment `business_report`
   with the headline KPIs as metrics. The Airflow "ML models" page links to it.

Same as `mlscale report` on the command line.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from mlscale.airflow.assets import PREDICTIONS, dag_args, failing_on, table_asset

KPI_MODEL_VALUE = table_asset("kpi", "kpi_model_value")


@dag(**dag_args(
    "business_analyst",
    schedule=[PREDICTIONS],
    tags=["business-analyst", "dbt", "report"],
    doc_md=__doc__,
))
def business_report():
    @task(outlets=[KPI_MODEL_VALUE])
    def build_kpis() -> str:
        """dbt build --select tag:kpi, with each spec's label, value column and top-k share."""
        from mlscale.config import settings
        from mlscale.business.reporting import build_kpis
        from mlscale.specs import load_specs
        from mlscale.data.warehouse import DbtFailed

        with failing_on(DbtFailed):
            return build_kpis(settings(), load_specs()).strip().splitlines()[-1]

    @task
    def render_report() -> dict:
        """Render reports/business_report.html from the marts and log it to MLflow."""
        from mlscale.config import settings
        from mlscale.business.reporting import report
        from mlscale.specs import load_specs

        return report(settings(), load_specs(), build=False)

    build_kpis() >> render_report()


business_report()
