"""A real LMX server (Daphne, `manage.py lmx_serve`) in a subprocess on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from benchmarks.servers import ServerExited, free_port, wait_ok

ROOT = Path(__file__).resolve().parent.parent


class LMXServer:
    def __init__(
        self,
        workdir: Path,
        models_dir: Path,
        *,
        env: dict | None = None,
        default_model: str = "",
        port: int | None = None,
        own_group: bool = False,
        serve_args: tuple[str, ...] = (),
    ):
        self.serve_args = serve_args  # more lmx_serve options (--ranks)
        self.own_group = own_group  # its own process group, which a test may signal as a whole
        self.workdir = workdir
        self.models_dir = models_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "lmx.sqlite3"
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        self.env = {
            **os.environ,
            "LMX_DATA_DIR": str(workdir),
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "LMX_MODELS_DIR": str(models_dir),
            "LMX_HF_CACHE": str(workdir / "hf-cache"),
            "LMX_DEFAULT_MODEL": default_model,
            "LMX_ADMIN_TOKEN": "",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )

    def start(self, *, wait_ready: bool = False, timeout: float = 120) -> LMXServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "-v0")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "lmx_serve", "--port", str(self.port), *self.serve_args],
            cwd=ROOT,
            env=self.env,
            stdout=self.stdout_path.open("w"),
            stderr=self.stderr_path.open("w"),
            start_new_session=self.own_group,
        )
        self.wait("/healthz", timeout)
        if wait_ready:
            self.wait("/readyz", timeout)
        return self

    def wait(self, path: str, timeout: float) -> None:
        try:
            wait_ok(self.url + path, timeout=timeout, alive=lambda: self.proc.poll() is None)
        except ServerExited:
            raise RuntimeError(f"LMX exited ({self.proc.returncode}):\n{self.stderr()}") from None
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}:\n{self.stdout()}\n{self.stderr()}") from None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): sockets stay open, nothing is sent, like a hung server."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stdout(self) -> str:
        return self.stdout_path.read_text() if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def engine_process(self):
        """The engine's process (the server's child that owns MLX), as psutil sees it."""
        import psutil

        children = psutil.Process(self.proc.pid).children()
        return next(p for p in children if any("spawn_main" in a for a in p.cmdline()))

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 120), **kw)
