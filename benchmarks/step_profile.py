"""Where one decoding step of a continuous batch spends its time.

`lmx_bench_kernels --model PATH` runs mlx-lm's BatchGenerator on that model at several batch
sizes: first the real step time (pipelined, as servers run it), then the same steps with each
part of the model synchronised and timed on its own (attention, its cache update, mask, RoPE,
SDPA, the MLP or MoE block, every quantized matmul, the sampler).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field


@dataclass
class StepProfile:
    layers: str  # "mlx-lm" or "LMX"
    batch: int
    step_ms: float  # pipelined, as in serving
    parts_ms: dict[str, float] = field(default_factory=dict)  # per step, each part synchronised


def _arrays(values):
    import mlx.core as mx

    for v in values:
        if isinstance(v, mx.array):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _arrays(v)


@contextlib.contextmanager
def _timed(targets: dict[str, tuple[object, str]], totals: dict[str, float]):
    """Wrap `owner.attr` for each target so that a call evaluates its inputs, then times its
    own work to completion."""
    import mlx.core as mx

    saved = []

    def wrap(name, fn):
        def timed(*args, **kwargs):
            mx.eval(list(_arrays(args)) + list(_arrays(kwargs.values())))
            mx.synchronize()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            mx.eval(list(_arrays([out])))
            mx.synchronize()
            totals[name] += time.perf_counter() - start
            return out

        return timed

    for name, (owner, attr) in targets.items():
        original = getattr(owner, attr)
        saved.append((owner, attr, original))
        setattr(owner, attr, wrap(name, original))
    try:
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


def _targets(model) -> dict[str, tuple[object, str]]:
    import importlib

    import mlx.nn as nn
    from mlx_lm.models import cache as cache_mod
    from mlx_lm.models import switch_layers

    from inference.engine.mlx_compat import batch_layers

    arch = importlib.import_module(type(model).__module__)
    layer = model.layers[0]
    targets = {
        "attention (all)": (type(layer.self_attn), "__call__"),
        "  kv cache update": (cache_mod.BatchKVCache, "update_and_fetch"),
        "  rope": (type(layer.self_attn.rope), "__call__"),
        "  sdpa": (arch, "scaled_dot_product_attention"),
        "mask": (cache_mod.BatchKVCache, "make_mask"),
        "mlp / moe block": (type(layer.mlp), "__call__"),
        "  experts (gather_qmm)": (switch_layers.QuantizedSwitchLinear, "__call__"),
        "  experts, all at once (LMX)": (batch_layers, "_all_experts"),
        "quantized linear (all)": (nn.QuantizedLinear, "__call__"),
        "norms": (type(layer.input_layernorm), "__call__"),
    }
    if not hasattr(layer.mlp, "switch_mlp"):
        del targets["  experts (gather_qmm)"], targets["  experts, all at once (LMX)"]
    return targets


def profile(
    model_path: str, *, batches=(1, 8, 32), prompt_tokens: int = 32, steps: int = 24
) -> list[StepProfile]:
    """Each batch size with the model as mlx-lm loads it, then with LMX's batch layers."""
    from mlx_lm import load

    from inference.engine.mlx_compat import batch_layers

    model, _ = load(model_path)
    results = [_profile_batch(model, "mlx-lm", b, prompt_tokens, steps) for b in batches]
    batch_layers.apply(model)
    return results + [_profile_batch(model, "LMX", b, prompt_tokens, steps) for b in batches]


def _profile_batch(model, layers: str, batch: int, prompt_tokens: int, steps: int) -> StepProfile:
    import mlx.core as mx
    from mlx_lm.generate import BatchGenerator

    gen = BatchGenerator(model, completion_batch_size=batch, prefill_batch_size=min(8, batch))
    step_ms = pipelined_step_ms(gen, model.args.vocab_size, batch, prompt_tokens, steps)
    targets = _targets(model)
    totals: dict[str, float] = dict.fromkeys(["step, synchronised", *targets], 0.0)
    timed_steps = 4
    with _timed(targets, totals):
        start = time.perf_counter()
        for _ in range(timed_steps):
            gen.next()
        mx.synchronize()
        totals["step, synchronised"] = time.perf_counter() - start
    gen.close()
    del gen
    mx.clear_cache()
    return StepProfile(layers, batch, step_ms, {k: v * 1000 / timed_steps for k, v in totals.items()})


def prefill(gen, vocab: int, batch: int, prompt_tokens: int, **insert) -> None:
    """`batch` prompts prefilled into `gen` (a BatchGenerator) and a few decoding steps taken;
    `insert` goes to `gen.insert` (e.g. processors)."""
    import mlx.core as mx

    prompts = [[(7 + 13 * i + 31 * j) % (vocab - 10) + 6 for j in range(prompt_tokens)] for i in range(batch)]
    gen.insert(prompts, max_tokens=[10_000] * batch, **insert)
    while len(gen._generation_batch) < batch:  # prefill everything first
        gen.next()
    for _ in range(4):
        gen.next()
    mx.synchronize()


def pipelined_step_ms(gen, vocab: int, batch: int, prompt_tokens: int, steps: int, **insert) -> float:
    """`batch` prompts prefilled into `gen` (a BatchGenerator), then the time of one decoding
    step, pipelined as a server runs them; `insert` goes to `gen.insert` (e.g. processors)."""
    import mlx.core as mx

    prefill(gen, vocab, batch, prompt_tokens, **insert)
    start = time.perf_counter()
    for _ in range(steps):
        gen.next()
    mx.synchronize()
    return (time.perf_counter() - start) * 1000 / steps


def markdown(results: list[StepProfile]) -> str:
    names = []
    for r in results:
        names += [n for n in r.parts_ms if n not in names]
    head = "| part (ms per step) | " + " | ".join(f"{r.layers}, batch {r.batch}" for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    lines.append("| **step, pipelined** | " + " | ".join(f"**{r.step_ms:.1f}**" for r in results) + " |")
    lines.append(
        "| aggregate tok/s | " + " | ".join(f"{r.batch * 1000 / r.step_ms:.0f}" for r in results) + " |"
    )
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{r.parts_ms.get(n, 0.0):.1f}" for r in results) + " |")
    return "\n".join(lines)
