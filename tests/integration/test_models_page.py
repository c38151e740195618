"""The ML models page when MLflow is down: it says so per model, at once, and still shows the KPIs."""

import dataclasses
import time

import pytest

from mlscale.airflow import models_page
from mlscale.specs import load_specs

pytestmark = pytest.mark.integration


def test_an_unreachable_registry_is_reported_not_waited_for(stack):
    down = dataclasses.replace(stack, mlflow_port=1)  # nothing listens there
    t0 = time.monotonic()
    page = models_page.render_page(down)
    assert time.monotonic() - t0 < 30
    assert "<h1>ML models</h1>" in page and 'class="tiles"' in page
    for name in load_specs():
        assert f'id="model-{name}"' in page
    assert page.count("The model registry at http://127.0.0.1:1 does not answer") == len(load_specs())
