"""Servers for the inference tests: uvicorn in a thread, ``serve-model`` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    from integration.pipeline.broker import free_port as _free_port

    return _free_port()


class ThreadServer:
    """uvicorn serving an app in a background thread."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class InstantServer:
    """``radgpt serve-model --engine instant`` as a real subprocess."""

    def __init__(self, tmp: Path, *, delay_ms: float = 0.0, extra: list[str] | None = None):
        self.port = free_port()
        self.adapter_dir = tmp / "instant-adapter"
        self.adapter_dir.mkdir(exist_ok=True)
        (self.adapter_dir / "adapter_config.json").write_text("{}")
        self.command = [
            sys.executable, "-m", "integration", "serve-model", "--engine", "instant",
            "--port", str(self.port), "--no-default-adapter", "--delay-ms", str(delay_ms),
            "--adapter", f"radiology={self.adapter_dir}", *(extra or []),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RADGPT_")}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InstantServer:
        env = self.env
        self.proc = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"instant server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("instant server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
