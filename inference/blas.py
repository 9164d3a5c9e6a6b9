"""OpenBLAS for the engine process on a Linux CPU (no MLX here: the server decides, the engine
process is started with the library preloaded).

The mlx-cpu wheel links a reference BLAS; with the system OpenBLAS preloaded, float32 matmuls run
~30x faster, so on a CPU device the engine dequantizes models to float32 (inference.engine.cpu_blas;
"Linux CPU paths", docs/BENCHMARKS.md). LMX_CPU_FAST_PATH=off keeps the quantized weights.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from pathlib import Path

OPENBLAS_CANDIDATES = [
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
]


def mode() -> str:
    from inference import conf

    return str(conf.get("LMX_CPU_FAST_PATH")).lower()


def openblas_library() -> str | None:
    for candidate in OPENBLAS_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


def openblas_loaded() -> bool:
    try:
        return "libopenblas" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


@functools.cache
def _mlx_runs_on_cpu() -> bool:
    """Asked of a short-lived interpreter, so this process never loads MLX."""
    probe = "import mlx.core as mx; print(mx.default_device() == mx.cpu)"
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "True"


def preload_library() -> str | None:
    """The OpenBLAS library the engine process should start with, or None."""
    if sys.platform != "linux" or mode() == "off":
        return None
    library = openblas_library()
    if library is None or not _mlx_runs_on_cpu():
        return None
    return library


def with_preload(library: str) -> str:
    """LD_PRELOAD with `library` first, before whatever this process's environment preloads."""
    return ":".join(p for p in (library, os.environ.get("LD_PRELOAD") or "") if p)


@contextlib.contextmanager
def preloaded_for_children():
    """Processes started inside this block (the engine's) get OpenBLAS preloaded when wanted."""
    library = preload_library()
    if library is None:
        yield
        return
    saved = os.environ.get("LD_PRELOAD")
    os.environ["LD_PRELOAD"] = with_preload(library)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["LD_PRELOAD"]
        else:
            os.environ["LD_PRELOAD"] = saved
