"""Airflow plugin: the "ML models" page in the Airflow UI's Browse menu (logic: include/mlscale/airflow/models_page.py)."""

from airflow.plugins_manager import AirflowPlugin

from mlscale.airflow.models_page import PAGE, URL_ROUTE, app


class MLModelsPlugin(AirflowPlugin):
    name = "mlscale_ml_models"
    fastapi_apps = [{"app": app, "url_prefix": "/mlscale", "name": "mlscale ML models"}]
    external_views = [{"name": PAGE, "href": "mlscale/models", "url_route": URL_ROUTE,
                       "destination": "nav", "category": "browse"}]
