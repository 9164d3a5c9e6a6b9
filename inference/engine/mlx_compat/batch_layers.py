"""Quantized layers shaped for batched decoding (LMX_BATCH_LAYERS: `auto` = on with CUDA).

mlx-lm's models call a quantized linear layer with activations of shape (batch, 1, dims) while
decoding a batch, which MLX's CUDA backend runs as `batch` matrix-vector products that each read
the whole weight; folded into (batch, dims) rows it is one product reading the weight once. For
mixture-of-experts blocks between 32 and 1,024 rows, computing every expert and picking each
token's beats mlx-lm's gather. Same results; figures in docs/BENCHMARKS.md ("Why batched
decoding was slow", "GPU: session 12").

`apply(model)` swaps the classes of these layers in place (parameters and names unchanged);
`use(model, batched=False)` puts mlx-lm's own classes back for a request decoded alone, where
the swaps compute the same and only cost Python time per layer.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.switch_layers import QuantizedSwitchLinear, SwitchGLU

FOLD_MIN_ROWS = 8  # below this both shapes run the same matrix-vector kernel


def enabled() -> bool:
    from inference import conf
    from inference.engine import mlx_compat

    return mlx_compat.active() and conf.on_with_cuda("LMX_BATCH_LAYERS")


def _fold(fn, x):
    if x.ndim <= 2 or x.size // x.shape[-1] < FOLD_MIN_ROWS:
        return fn(x)
    lead = x.shape[:-1]
    y = fn(x.reshape(-1, x.shape[-1]))
    return y.reshape(*lead, y.shape[-1])


class FoldedQuantizedLinear(nn.QuantizedLinear):
    def __call__(self, x):
        return _fold(super().__call__, x)


class FoldedQuantizedEmbedding(nn.QuantizedEmbedding):
    """Tied output heads call `as_linear`."""

    def as_linear(self, x):
        return _fold(super().as_linear, x)


def _all_experts(proj: QuantizedSwitchLinear, x: mx.array) -> mx.array:
    """x (1 or E, rows, in) -> (E, rows, out): every expert applied to every row."""
    experts = proj["weight"].shape[0]
    return mx.gather_qmm(
        x,
        proj["weight"],
        proj["scales"],
        proj.get("biases"),
        rhs_indices=mx.arange(experts, dtype=mx.uint32),
        transpose=True,
        group_size=proj.group_size,
        bits=proj.bits,
        mode=proj.mode,
    )


class DenseBatchSwitchGLU(SwitchGLU):
    """Below `min_rows` tokens mlx-lm's gather is cheaper (few experts are hit); above
    `max_rows` the wasted work on unchosen experts outweighs reading them once."""

    min_rows = 32
    max_rows = 1024

    def _dense_ok(self, rows: int) -> bool:
        if not self.min_rows <= rows <= self.max_rows:
            return False
        projs = (self.gate_proj, self.up_proj, self.down_proj)
        return all(isinstance(p, QuantizedSwitchLinear) for p in projs) and all(
            getattr(p, "global_scale", None) is None and "bias" not in p for p in projs
        )

    def __call__(self, x, indices):
        rows = x.size // x.shape[-1]
        if not self._dense_ok(rows):
            return super().__call__(x, indices)
        top_k = indices.shape[-1]
        flat = x.reshape(1, rows, x.shape[-1])
        hidden = self.activation(_all_experts(self.up_proj, flat), _all_experts(self.gate_proj, flat))
        out = _all_experts(self.down_proj, hidden)  # (experts, rows, dims)
        chosen = out[indices.reshape(rows, top_k), mx.arange(rows)[:, None]]  # (rows, top_k, dims)
        return chosen.reshape(*x.shape[:-1], top_k, out.shape[-1])


SWAPS = {
    nn.QuantizedLinear: FoldedQuantizedLinear,
    nn.QuantizedEmbedding: FoldedQuantizedEmbedding,
    SwitchGLU: DenseBatchSwitchGLU,
}


class _Swaps:
    """The swapped modules of one model and which classes they have now."""

    def __init__(self):
        self.pairs: list[tuple[nn.Module, type, type]] = []  # (module, mlx-lm's class, LMX's)
        self.batched = True

    def use(self, batched: bool) -> None:
        if batched != self.batched:  # ~300 modules for Qwen3-30B-A3B: only on a change
            for module, plain, swapped in self.pairs:
                module.__class__ = swapped if batched else plain
            self.batched = batched


def apply(model) -> int:
    """Swap the layers of `model` in place; returns how many were swapped."""
    use(model, batched=True)
    pairs = []
    for _, module in model.named_modules():
        replacement = SWAPS.get(type(module))
        if replacement is not None:
            pairs.append((module, type(module), replacement))
            module.__class__ = replacement  # same attributes, new forward
    if pairs:
        model.__dict__.setdefault("_lmx_swaps", _Swaps()).pairs += pairs
    return len(pairs)


def use(model, *, batched: bool) -> None:
    """LMX's batch layers (batched) or mlx-lm's own, where `apply` swapped any; cheap when
    nothing changes. Engine thread only, between forward passes."""
    swaps = model.__dict__.get("_lmx_swaps")
    if swaps is not None:
        swaps.use(batched)
