"""Two tasks creating the same table at the same moment (two monitor_ DAGs on a new warehouse, seen through the
scheduler): the second waits for the first and goes on, instead of failing on PostgreSQL's catalog."""

import threading

import numpy as np
import pytest

from mlscale import ops, postgres
from mlscale.production import scoring
from tests.helpers import scalar

pytestmark = pytest.mark.integration


def _race(settings, first, second) -> list[BaseException]:
    """`first` runs in an open transaction; `second` starts in another session and blocks on it; then the first
    commits. Return what `second` raised."""
    errors: list[BaseException] = []

    def other():
        try:
            with postgres.warehouse(settings) as conn:
                second(conn)
        except BaseException as exc:  # noqa: BLE001 (reported to the test)
            errors.append(exc)

    with postgres.warehouse(settings) as conn:
        conn.execute("select 1")  # a transaction is open: what `first` creates stays uncommitted until the end
        first(conn)
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=3)
        assert thread.is_alive(), "the second session should wait for the first's catalog rows"
        conn.commit()
    thread.join(timeout=30)
    return errors


def test_two_sessions_creating_the_ops_tables_at_once_both_succeed(warehouse):
    errors = _race(warehouse, lambda c: ops.ensure(c, "model_monitoring"), lambda c: ops.ensure(c, "model_monitoring"))

    assert errors == []
    assert scalar(warehouse, "select count(*) from ops.model_monitoring") == 0


def test_two_first_scoring_runs_at_once_both_write(warehouse):
    def score(model):
        return lambda conn: scoring.write_scores(conn, "predictions", model, "1", scoring.date(2026, 3, 1),
                                                 np.array([1, 2]), np.array([0.1, 0.9]))

    errors = _race(warehouse, score("churn_90d"), score("revenue_90d"))

    assert errors == []
    assert scalar(warehouse, "select count(distinct model) from ml.predictions") == 2
