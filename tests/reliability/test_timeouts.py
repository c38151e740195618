"""Nothing waits forever (RELIABILITY.md): a statement past its timeout, a lock held too long, a PostgreSQL or
MLflow server that accepts a connection and never answers, a dbt command past its limit. Each fails within its
bound with an error that names it, against real servers."""

import dataclasses

import psycopg
import pytest
from mlflow.exceptions import MlflowException

from mlscale import postgres, registry
from mlscale.data import warehouse
from tests.reliability.conftest import Stopwatch, silent_server

pytestmark = pytest.mark.reliability


def test_every_connection_bounds_its_statements_and_lock_waits(stack):
    with postgres.warehouse(stack) as conn:
        assert [conn.execute(f"show {name}").fetchone()[0] for name in ("statement_timeout", "lock_timeout")] == \
            ["1h", "5min"]
    # options a DSN names itself win over the defaults
    with postgres.connect(stack.dsn(stack.warehouse_db) + " options='-c statement_timeout=7s'", stack) as conn:
        assert conn.execute("show statement_timeout").fetchone()[0] == "7s"


def test_a_statement_that_outlives_its_timeout_is_cancelled(stack):
    settings = dataclasses.replace(stack, pg_statement_timeout=1)
    with Stopwatch() as clock, pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
        with postgres.warehouse(settings) as conn:
            conn.execute("select pg_sleep(60)")
    assert 1 <= clock.seconds < 5


def test_a_lock_held_too_long_fails_the_waiter_not_the_holder(stack):
    settings = dataclasses.replace(stack, pg_lock_timeout=1)
    with postgres.warehouse(stack, autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(hashtext('mlscale.reliability'))")
        with Stopwatch() as clock, pytest.raises(psycopg.errors.LockNotAvailable, match="lock timeout"):
            with postgres.warehouse(settings, autocommit=True) as waiter:
                waiter.execute("select pg_advisory_lock(hashtext('mlscale.reliability'))")
        assert holder.execute("select pg_advisory_unlock(hashtext('mlscale.reliability'))").fetchone()[0] is True
    assert 1 <= clock.seconds < 5


def test_a_postgresql_server_that_never_answers_fails_the_connection(stack):
    settings = dataclasses.replace(stack, pg_connect_timeout=2)
    with silent_server() as port, Stopwatch() as clock:
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            postgres.connect(f"postgresql://nobody@127.0.0.1:{port}/warehouse", settings)
    assert 2 <= clock.seconds < 6


def test_an_mlflow_server_that_never_answers_raises_instead_of_reading_as_no_version(stack):
    """A lookup that times out is an error, never 'no Production version' (which would skip scoring)."""
    with silent_server() as port:
        settings = dataclasses.replace(stack, mlflow_port=port, mlflow_timeout=2, mlflow_retries=0)
        with Stopwatch() as clock, pytest.raises(MlflowException, match="API request .* failed"):
            registry.alias_version(settings, "churn_90d", "production")
    assert 2 <= clock.seconds < 6
    # the answer 'no such alias' from a server that answers is still None
    assert registry.alias_version(stack, "mlscale_no_such_model", "production") is None


def test_a_dbt_command_past_its_limit_is_stopped_with_a_clear_error(stack):
    settings = dataclasses.replace(stack, dbt_timeout=1)
    with Stopwatch() as clock, pytest.raises(warehouse.DbtFailed, match="did not finish within 1 s"):
        warehouse.dbt(settings, "parse")
    assert clock.seconds < 5
