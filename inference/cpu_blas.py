"""Linux CPU fast path.

The mlx-cpu wheel links a reference BLAS and its 4-bit matmul is not vectorised. With the
system OpenBLAS preloaded, float32 matmuls run ~30x faster, so on a CPU device LMX
dequantizes models to float32 (measured in docs/BENCHMARKS.md). LMX_CPU_FAST_PATH=off
keeps the quantized weights.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BACKEND = "+cpu-f32-openblas"  # ends the backend name of a model loaded this way

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


def on_cpu() -> bool:
    import mlx.core as mx

    return mx.default_device() == mx.cpu


def preload_and_reexec() -> None:
    """Restart this process with OpenBLAS preloaded, when that is possible and wanted."""
    if sys.platform != "linux" or mode() == "off" or os.environ.get("LMX_BLAS_REEXEC"):
        return
    library = openblas_library()
    if library is None or openblas_loaded() or not on_cpu():
        return
    env = dict(os.environ, LMX_BLAS_REEXEC="1")
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def should_dequantize() -> bool:
    chosen = mode()
    if chosen == "off" or not on_cpu():
        return False
    return chosen == "on" or openblas_loaded()


def dequantize(model):
    import mlx.core as mx
    from mlx_lm.utils import dequantize_model

    model = dequantize_model(model)
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    return model
