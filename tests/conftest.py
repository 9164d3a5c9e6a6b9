from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.lmx_server import ROOT, LMXServer

MLX_ID = "SmolLM2-135M-Instruct"
GGUF_ID = "SmolLM2-135M-Instruct-Q4_1.gguf"


@pytest.fixture(scope="session")
def model_store(tmp_path_factory) -> Path:
    """A model store holding the real default model in both formats, installed by our command."""
    models = tmp_path_factory.mktemp("models")
    env = {**os.environ, "LMX_MODELS_DIR": str(models)}
    subprocess.run(
        [sys.executable, "manage.py", "lmx_install_default"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return models


@pytest.fixture(scope="session")
def server(model_store, tmp_path_factory):
    """The shared server: default model (MLX-native SmolLM2) loaded at start, and only it: JIT
    loading is off, so a request naming another model is refused, not loaded beside it."""
    srv = LMXServer(
        tmp_path_factory.mktemp("server"), model_store, default_model=MLX_ID, env={"LMX_JIT_LOAD": "false"}
    )
    srv.start(wait_ready=True)
    yield srv
    srv.stop()


@pytest.fixture
def make_server(model_store, tmp_path):
    """Servers with their own settings, stopped at the end of the test."""
    started = []

    def make(
        *,
        env: dict | None = None,
        default_model: str = "",
        models_dir: Path | None = None,
        wait_ready: bool = False,
        port: int | None = None,
        own_group: bool = False,
        serve_args: tuple[str, ...] = (),
    ) -> LMXServer:
        srv = LMXServer(
            tmp_path / f"srv{len(started)}",
            models_dir or model_store,
            env=env,
            default_model=default_model,
            port=port,
            own_group=own_group,
            serve_args=serve_args,
        )
        started.append(srv)
        return srv.start(wait_ready=wait_ready)

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server_db(django_db_blocker):
    """ORM access to a running server's own database (ErrorEvent, ModelRecord rows)."""
    from django.db import connections

    aliases = []

    def using(srv: LMXServer) -> str:
        alias = f"lmx_{srv.port}"
        if alias not in connections.settings:
            connections.settings[alias] = connections.configure_settings(
                {
                    "default": connections.settings["default"],
                    alias: {
                        "ENGINE": "django.db.backends.sqlite3",
                        "NAME": str(srv.db_path),
                        "OPTIONS": {"timeout": 20},
                    },
                }
            )[alias]
            aliases.append(alias)
        return alias

    with django_db_blocker.unblock():
        yield using
        for alias in aliases:
            connections[alias].close()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def link_model(src: Path, dst: Path) -> Path:
    """A model (a GGUF file or an MLX folder) at `dst` as hard links: a store of its own, no copy."""
    if src.is_dir():
        dst.mkdir(parents=True)
        for f in src.iterdir():
            os.link(f, dst / f.name)
    else:
        os.link(src, dst)
    return dst


def copy_model(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)
    return dst


@contextmanager
def running_engine(cls, **limits):
    """An Engine (max_concurrent) or an engine client (max_concurrent, max_queue) started with
    small limits; its lifecycle events collect in `.events`; stopped on exit."""
    events: list[dict] = []
    engine = cls(
        **limits,
        prompt_cache_size=4,
        prompt_cache_bytes=1 << 30,
        listeners=[events.append],
    ).start()
    engine.events = events
    try:
        yield engine
    finally:
        engine.stop_and_join()
