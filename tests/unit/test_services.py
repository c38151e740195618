import logging
import sys
import time

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
