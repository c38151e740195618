"""Faults injected into real servers: helpers the reliability tests share."""

import socket
import threading
import time
from contextlib import contextmanager


@contextmanager
def silent_server():
    """The port of a TCP server that accepts connections and never sends a byte: a hung PostgreSQL or MLflow.
    (The kernel completes the handshake from the listen backlog; nothing ever reads or answers.)"""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


class Stopwatch:
    """Seconds since it started, as `seconds` once the block ends."""

    def __enter__(self):
        self.start, self.seconds = time.monotonic(), None
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.start
        return False


def register_tiny_version(settings, model: str) -> str:
    """Register a small fitted scikit-learn model as a new version of `model`, its artifact hash recorded as
    training records it: a real version for the registry's faults, without training on a shop."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlscale import tracking
    from mlscale.modeling import artifacts

    fitted = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1]))
    with tracking.run(settings, f"{model}_reliability", "tiny version"):
        info = mlflow.sklearn.log_model(fitted, name="model", registered_model_name=model,
                                        pip_requirements=["scikit-learn"])  # no inference of the environment
    version = str(info.registered_model_version)
    artifacts.record(settings, model, version)
    return version


class CuttableLink:
    """A TCP link to a real server (a forwarding proxy on a port of its own) that a test cuts and restores: the
    network fault between a client and, say, the MLflow server. While cut, every open connection is closed and
    new ones are closed as they arrive."""

    def __init__(self, target_port: int):
        self.target_port, self.up, self._open = target_port, True, set()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.up = False
        for conn in list(self._open):
            _close(conn)

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self.up:
                _close(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for conn in (source, sink):
                _close(conn)
                self._open.discard(conn)


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
