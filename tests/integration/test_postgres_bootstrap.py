"""A private cluster really starts and answers, from the installed binaries and from the pgserver wheel."""

import os

import pytest

from mlscale import postgres
from tests.helpers import free_port, server_folder

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir():
    with server_folder("mlscale-pg-") as folder:
        yield folder


def _bindirs():
    dirs = {"pgserver": postgres._pgserver_bindir()}
    try:
        installed = postgres.find_bindir()
        if installed != dirs["pgserver"]:
            dirs["installed"] = installed
    except postgres.PostgresUnavailable:
        pass
    return dirs


@pytest.mark.parametrize("kind", ["installed", "pgserver"])
def test_private_cluster_starts_answers_and_restarts(kind, state_dir):
    bindir = _bindirs().get(kind)
    if bindir is None:
        pytest.skip("no PostgreSQL binaries installed on this machine")
    port = free_port()
    data = state_dir / "pgdata"
    dsn = postgres.start_private_cluster(data, port, bindir)
    try:
        assert dsn == f"postgresql://mlscale@127.0.0.1:{port}/postgres"
        with postgres.connect(dsn) as conn:
            assert conn.execute("select 1 + 1").fetchone()[0] == 2
            conn.execute("create table t (x int)")
        postgres.stop_private_cluster(data, bindir)
        assert not postgres.answers(dsn)
        postgres.start_private_cluster(data, port, bindir)  # restart keeps the data
        with postgres.connect(dsn) as conn:
            assert conn.execute("select count(*) from t").fetchone()[0] == 0
    finally:
        postgres.stop_private_cluster(data, bindir)


def test_unreachable_state_dir_is_a_clear_error(state_dir):
    if os.geteuid() != 0:
        pytest.skip("only root hands the server to another user")
    locked = state_dir / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(postgres.PostgresUnavailable, match="cannot enter .*locked.*MLSCALE_STATE_DIR"):
        postgres.start_private_cluster(locked / "sub" / "pgdata", free_port(), postgres.find_bindir())


def test_given_dsn_that_does_not_answer_says_what_to_do(tmp_path):
    from mlscale.config import Settings

    s = Settings.from_env({"MLSCALE_ROOT": str(tmp_path), "MLSCALE_PG_DSN": "postgresql://x@127.0.0.1:1/postgres"})
    with pytest.raises(postgres.PostgresUnavailable, match="does not answer.*unset MLSCALE_PG_DSN"):
        postgres.ensure_server(s)
