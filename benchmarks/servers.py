"""The servers under test, each started in its own process on a free port and stopped after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from inference import conf

ROOT = Path(__file__).resolve().parents[1]

# mlx_lm.server with EOS ignored (as mlx_lm.benchmark does in-process), so every request
# generates exactly max_tokens and the servers compare on equal work.
PEER = """
import mlx_lm.server as s
_load = s.ModelProvider._load
def _load_no_eos(self, *args, **kwargs):
    _load(self, *args, **kwargs)
    self.tokenizer._eos_token_ids = set()
s.ModelProvider._load = _load_no_eos
s.main()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerExited(RuntimeError):
    pass


def wait_ok(url: str, *, timeout: float, alive: Callable[[], bool], interval: float = 0.2) -> None:
    """Poll `url` until it answers 200. ServerExited as soon as `alive()` says the server is
    gone; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise ServerExited(url)
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{url} not 200 after {timeout}s")


class Served:
    def __init__(self, name: str, argv: list[str], env: dict, port: int, log: Path):
        self.name, self.port, self.log = name, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait(self, path: str, timeout: float = 900) -> None:
        def alive() -> bool:
            return self.proc.poll() is None and "was not loaded" not in self.log.read_text()

        try:
            wait_ok(self.url + path, timeout=timeout, alive=alive, interval=0.5)
        except ServerExited:
            self.stop()
            raise RuntimeError(f"{self.name} failed to start:\n{self.log.read_text()[-3000:]}") from None

    def wait_warm(self, timeout: float = 600) -> None:
        """Until LMX's background warm-up is done (on a GPU, with prefill lengths to warm): the
        measurements are of a warm server, as before that warm-up moved after ready."""
        deadline = time.monotonic() + timeout
        while (
            "Prefill buckets" in (text := self.log.read_text()) and "finished in the background" not in text
        ):
            if self.proc.poll() is not None or time.monotonic() > deadline or "before ready" in text:
                return
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_lmx(model_id: str, **how) -> Served:
    """LMX started as `launch_lmx` takes it, ready and warm."""
    served = launch_lmx(model_id, **how)
    served.wait("/readyz")
    served.wait_warm()
    return served


def launch_lmx(
    model_id: str,
    *,
    workdir: Path,
    streams: int,
    extra_env: dict | None = None,
    serve_args: tuple[str, ...] = (),
) -> Served:
    """LMX started (its database migrated first), not yet ready."""
    port = free_port()
    env = {
        **os.environ,
        **(extra_env or {}),
        "LMX_DEFAULT_MODEL": model_id,
        "LMX_MAX_CONCURRENT": str(max(streams, 1)),
        "LMX_MAX_QUEUE": str(max(streams, 1) * 2),
        "LMX_DATA_DIR": str(workdir),
        "LMX_MODELS_DIR": str(conf.models_dir()),
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "PYTHONUNBUFFERED": "1",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    # With the benchmark hook, the benchmark's own launcher: lmx_serve itself installs no hook.
    serve = ["-m", "benchmarks.hooked_serve"] if env.get("LMX_BENCH_HOOK") else ["manage.py", "lmx_serve"]
    argv = [sys.executable, *serve, "--port", str(port), *serve_args]
    return Served("LMX", argv, env, port, workdir / "lmx.log")


def start_peer(model_path: str, *, workdir: Path, extra_args: tuple[str, ...] = ()) -> Served:
    served = launch_peer(model_path, workdir=workdir, extra_args=extra_args)
    served.wait("/v1/models")
    return served


def launch_peer(
    model_path: str, *, workdir: Path, extra_args: tuple[str, ...] = (), env: dict | None = None
) -> Served:
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        PEER,
        "--model",
        model_path,
        "--port",
        str(port),
        "--log-level",
        "WARNING",
        *extra_args,
    ]
    return Served(
        "mlx_lm.server",
        argv,
        {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        port,
        workdir / "peer.log",
    )
