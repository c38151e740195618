import logging
import sys
import time

import pytest

from mlscale.local import services
from mlscale.config import Settings

# A child that exits on SIGTERM, and one that ignores it.
POLITE = [sys.executable, "-c", "import time; time.sleep(60)"]
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]


def _settings(tmp_path):
    return Settings.from_env({"MLSCALE_ROOT": str(tmp_path)})


def test_stop_ends_a_child_this_process_started_on_sigterm(tmp_path, caplog):
    settings = _settings(tmp_path)
    pid = services.start_background(settings, "sleeper", POLITE, env={})
    assert (settings.run_dir / "sleeper.pid").read_text().strip() == str(pid)

    with caplog.at_level(logging.INFO, logger="mlscale.local.services"):
        assert services.stop_background(settings, "sleeper", timeout=10)

    # the exited child is reaped, so the stop does not wait out the timeout and fall back to SIGKILL
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"stopped sleeper (pid {pid})" in caplog.text
    assert not (settings.run_dir / "sleeper.pid").exists()
    assert services.stop_background(settings, "sleeper") is False


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path, caplog):
    settings = _settings(tmp_path)
    pid = services.start_background(settings, "stubborn", STUBBORN, env={})
    deadline = time.monotonic() + 10
    while not _ignores_sigterm(pid) and time.monotonic() < deadline:  # it has installed its handler
        time.sleep(0.05)
    assert _ignores_sigterm(pid)

    with caplog.at_level(logging.WARNING, logger="mlscale.local.services"):
        assert services.stop_background(settings, "stubborn", timeout=1)

    assert f"stubborn (pid {pid}) did not stop within 1 s of SIGTERM: killed" in caplog.text


def _ignores_sigterm(pid: int) -> bool:
    """Whether SIGTERM (15) is in the process's ignored-signals mask (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(line for line in f if line.startswith("SigIgn:")).split()[1]
    return bool(int(mask, 16) & (1 << (15 - 1)))


def test_waiting_for_a_service_that_exits_or_never_answers_fails_with_its_log(tmp_path):
    settings = _settings(tmp_path)
    nothing = "http://127.0.0.1:9/health"  # the discard port: nothing answers
    services.start_background(settings, "crasher", [sys.executable, "-c", "print('bad config: no port'); exit(3)"], {})
    t0 = time.monotonic()
    with pytest.raises(services.ServiceDown) as exc:
        services.wait_until_up(settings, "crasher", nothing, timeout=60)
    assert time.monotonic() - t0 < 10  # it exited: no waiting out the timeout
    assert str(exc.value).startswith(f"crasher exited before it answered at {nothing}; the last lines of its log")
    assert str(exc.value).endswith("bad config: no port\n")

    services.start_background(settings, "mute", POLITE, env={})
    try:
        with pytest.raises(services.ServiceDown, match=r"^mute did not answer within 2 s at http://127.0.0.1:9/health"):
            services.wait_until_up(settings, "mute", nothing, timeout=2)
    finally:
        services.stop_background(settings, "mute")
