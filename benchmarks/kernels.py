"""Kernel timings under the engine: where batched decoding spends its time.

`lmx_bench_kernels` prints, for the linear and MoE expert layers of a model shape, the time of
each layer as mlx-lm's models call it and of LMX's batch layers (inference.engine.mlx_compat.batch_layers), at
the row counts a server sees (1 to 256 streams decoding). It also measures how long a probe thread waits for the GIL while another
thread runs steps of that size, which is what /readyz sees under load.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

ROWS = (1, 2, 4, 8, 16, 32, 64, 256)


@dataclass
class KernelRow:
    layer: str
    rows: int
    mlx_lm_ms: float  # the layer as mlx-lm's models call it
    lmx_ms: float  # LMX's batch layer (inference.engine.mlx_compat.batch_layers)

    @property
    def speedup(self) -> float:
        return self.mlx_lm_ms / self.lmx_ms


def _time(fn, *, repeat: int) -> float:
    """Milliseconds per call of `fn`, `repeat` calls chained into one evaluation; NaN where
    this backend lacks the kernel."""
    import mlx.core as mx

    try:
        mx.eval(fn())
    except RuntimeError:
        return float("nan")
    mx.synchronize()
    start = time.perf_counter()
    outs = [fn() for _ in range(repeat)]
    mx.eval(outs)
    mx.synchronize()
    return (time.perf_counter() - start) * 1000 / repeat


def _quantized(module, dtype):
    """Quantize the children of `module` as mlx-lm does."""
    import mlx.core as mx
    import mlx.nn as nn

    module.set_dtype(dtype)
    nn.quantize(module, group_size=64, bits=4)
    mx.eval(module.parameters())
    return module


def linear_rows(
    shapes: dict[str, tuple[int, int]], *, rows=ROWS, dtype=None, repeat: int = 10
) -> list[KernelRow]:
    """Each projection with the activations of `rows` decoding streams: (rows, 1, dims)."""
    import mlx.core as mx
    import mlx.nn as nn

    from inference.engine.mlx_compat.batch_layers import FoldedQuantizedLinear

    dtype = dtype or mx.bfloat16
    results = []
    for name, (d_in, d_out) in shapes.items():
        dense = nn.Linear(d_in, d_out, bias=False)
        dense.set_dtype(dtype)
        layer = nn.QuantizedLinear.from_linear(dense, 64, 4)
        mx.eval(layer.parameters())
        for m in rows:
            x = mx.random.normal((m, 1, d_in)).astype(dtype)
            mx.eval(x)
            results.append(
                KernelRow(name, m, *_both(layer, FoldedQuantizedLinear, lambda x=x, f=layer: f(x), repeat))
            )
    return results


def moe_rows(
    *, hidden: int, ffn: int, experts: int, top_k: int, rows=ROWS, dtype=None, repeat: int = 10
) -> list[KernelRow]:
    """The expert block (SwitchGLU) for `rows` decoding tokens routed to `top_k` experts each."""
    import mlx.core as mx
    from mlx_lm.models.switch_layers import SwitchGLU

    from inference.engine.mlx_compat.batch_layers import DenseBatchSwitchGLU

    dtype = dtype or mx.bfloat16
    block = _quantized(SwitchGLU(hidden, ffn, experts), dtype)
    block.min_rows, block.max_rows = 1, 1 << 30  # measure LMX's path at every size
    results = []
    for m in rows:
        x = mx.random.normal((m, 1, hidden)).astype(dtype)
        idx = mx.argpartition(mx.random.normal((m, 1, experts)), kth=top_k - 1, axis=-1)[..., :top_k]
        mx.eval(x, idx)
        results.append(
            KernelRow(
                "experts", m, *_both(block, DenseBatchSwitchGLU, lambda x=x, i=idx, f=block: f(x, i), repeat)
            )
        )
    return results


def _both(module, lmx_class, call, repeat: int) -> tuple[float, float]:
    """Time `call` with `module` as mlx-lm built it, then as LMX's batch layer."""
    original = type(module)
    before = _time(call, repeat=repeat)
    module.__class__ = lmx_class
    try:
        return before, _time(call, repeat=repeat)
    finally:
        module.__class__ = original


@dataclass
class GilRow:
    mode: str
    step_ms: float
    wait_p50_ms: float
    wait_p99_ms: float
    wait_max_ms: float


def gil_waits(*, d: int = 4096, layers: int = 64, rows: int = 32, steps: int = 20) -> list[GilRow]:
    """How long a thread that wakes every 0.5 ms waits while another thread runs model-sized
    steps, synchronising each step with `mx.eval` (which lets the GIL go) or `.tolist()`."""
    import mlx.core as mx

    wq, scales, biases = mx.quantize(mx.random.normal((d, d)).astype(mx.bfloat16) * d**-0.5, 64, 4)
    x0 = mx.random.normal((rows, d)).astype(mx.bfloat16)
    mx.eval(wq, scales, biases, x0)

    def step():
        x = x0
        for _ in range(layers):
            x = mx.quantized_matmul(x, wq, scales, biases, transpose=True, group_size=64, bits=4)
        return x[:, :1].argmax(axis=0)

    results = []
    for mode in ("mx.eval", "tolist", "async_eval+eval"):
        durations = []

        def work(mode=mode, durations=durations):
            pending = None
            for _ in range(steps):
                start = time.perf_counter()
                y = step()
                if mode == "mx.eval":
                    mx.eval(y)
                    y.tolist()
                elif mode == "tolist":
                    y.tolist()
                else:
                    mx.async_eval(y)
                    if pending is not None:
                        mx.eval(pending)
                        pending.tolist()
                    pending = y
                durations.append((time.perf_counter() - start) * 1000)

        step()  # warm up
        thread = threading.Thread(target=work)
        waits = []
        thread.start()
        while thread.is_alive():
            start = time.perf_counter()
            time.sleep(0.0005)
            waits.append((time.perf_counter() - start) * 1000 - 0.5)
        waits.sort()
        durations.sort()
        results.append(
            GilRow(
                mode,
                durations[len(durations) // 2],
                waits[len(waits) // 2],
                waits[int(len(waits) * 0.99)],
                waits[-1],
            )
        )
    return results


def markdown(linear: list[KernelRow], moe: list[KernelRow], gil: list[GilRow]) -> str:
    lines = [
        "| layer | rows | as mlx-lm calls it, ms | LMX batch layer, ms | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in [*linear, *moe]:
        lines.append(f"| {r.layer} | {r.rows} | {r.mlx_lm_ms:.3f} | {r.lmx_ms:.3f} | {r.speedup:.2f}× |")
    if gil:
        lines += [
            "",
            "| step synchronised by | step ms | probe wait p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|",
        ]
        for g in gil:
            lines.append(
                f"| {g.mode} | {g.step_ms:.1f} | {g.wait_p50_ms:.2f} | {g.wait_p99_ms:.2f} | {g.wait_max_ms:.2f} |"
            )
    return "\n".join(lines)


def layer_shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(input, output) of each dense projection of a model config, as the weights are stored."""
    h = config["hidden_size"]
    head = config.get("head_dim") or h // config["num_attention_heads"]
    shapes = {
        "q_proj": (h, config["num_attention_heads"] * head),
        "kv_proj": (h, config["num_key_value_heads"] * head),
        "o_proj": (config["num_attention_heads"] * head, h),
    }
    if "num_experts" not in config:
        shapes["up_proj"] = (h, config["intermediate_size"])
        shapes["down_proj"] = (config["intermediate_size"], h)
    shapes["lm_head"] = (h, config["vocab_size"])
    return shapes
