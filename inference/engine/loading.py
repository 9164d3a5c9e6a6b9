"""Loading a model into MLX: the weights, the backend's speed-ups, the warm-up, its figures.

Engine thread only (inference.engine.model_host calls it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from inference.engine import cpu_blas, gguf
from inference.engine.mlx_compat import attention, batch_layers
from inference.engine.solo import BUCKETS, buckets_enabled
from inference.errors import ModelLoadError
from inference.store import ModelSpec


def load(spec: ModelSpec, split: Callable[[object, dict], str] | None = None):
    """(model, tokenizer, config, backend) for an MLX-native folder or a GGUF file. `split`
    shards the model over a distributed group (inference.engine.sharding), after the weights
    take their final precision and before LMX swaps its batch layers in."""
    path = Path(spec.path)
    if spec.format == "gguf":
        model, tokenizer, described = gguf.load(path)
        config, backend = described.config, "mlx-gguf"
    else:
        from mlx_lm.utils import load as mlx_load

        _refuse_classifier(path)
        try:
            # Split over a group: nothing read until the split, so a rank reads only its part
            # (a pipeline stage skips the other stages' layers; tensor slices drop the rest).
            model, tokenizer = mlx_load(str(path), lazy=split is not None)
        except (ValueError, OSError, RuntimeError, KeyError) as exc:  # mx.load: RuntimeError on corrupt files
            raise ModelLoadError(f"Cannot load the MLX model at {path.name}: {exc}") from exc
        config, backend = json.loads((path / "config.json").read_text()), "mlx"
    try:  # loaded lazily for a split: a damaged file shows when it is read
        if cpu_blas.should_dequantize():
            model = cpu_blas.dequantize(model)
            backend += cpu_blas.BACKEND
        if split is not None:
            backend += f"+{split(model, config)}-parallel"
            mx.eval(model.parameters())  # each rank keeps only its part
    except RuntimeError as exc:
        raise ModelLoadError(f"Cannot load the model at {path.name}: {exc}") from exc
    if batch_layers.enabled() and batch_layers.apply(model):
        backend += "+batch-layers"
    short_attention = attention.enabled()
    attention.install(short_attention)  # for the whole engine process; the last load's setting holds
    if short_attention:
        backend += "+short-attention"
    if buckets_enabled():
        backend += "+prefill-buckets"
    return model, tokenizer, config, backend


def warm_up(model) -> None:
    """A few tokens through the model, thrown away, so the first request does not pay for the
    backend's first use of its kernels (as llama.cpp's server does; docs/bench/h100-ttft-llama-3.1-8b.md,
    docs/BENCHMARKS.md): eight tokens, eight more after them (a chunk after cached tokens) and one
    decoding step. What only some requests need comes later (`later_warm_ups`)."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    for _chunk in range(2):
        mx.eval(model(mx.array([[0] * 8], dtype=mx.uint32), cache=cache)[:, -1], [c.state for c in cache])
    mx.eval(model(mx.array([[0]], dtype=mx.uint32), cache=cache))
    del cache
    mx.clear_cache()


def later_warm_ups(model) -> list[tuple[str, Callable[[], None]]]:
    """With LMX_PREFILL_BUCKETS on a GPU, a chunk of each bucket's length, shortest first: MLX's
    CUDA build pays for its first call at each length (on a fresh machine it compiles kernels
    then). Under LMX_WARM_UP=background the engine runs them one at a time while it has nothing
    else to do, after the model is ready (a request that comes first pays for its own length);
    under `load` before. None on the CPU, which has no such first calls."""
    if not buckets_enabled() or cpu_blas.on_cpu():
        return []
    return [(f"{length}-token chunk", partial(_chunk, model, length)) for length in BUCKETS]


def warm_up_in_background() -> bool:
    from inference import conf

    return str(conf.get("LMX_WARM_UP")).lower() == "background"


def _chunk(model, length: int) -> None:
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    # Logits too: a short prompt rest is fed with its last token (engine.solo.tail_limit).
    mx.eval(model(mx.array([[0] * length], dtype=mx.uint32), cache=cache)[:, -1], [c.state for c in cache])
    del cache
    mx.clear_cache()


def device_memory() -> int:
    """Memory of the MLX device in bytes; 0 where the backend does not say."""
    try:
        info = mx.device_info()
    except Exception:  # noqa: BLE001 - some backends have no device_info
        return 0
    return int(info.get("memory_size") or info.get("total_memory") or 0)


def parameter_bytes(model) -> int:
    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))


def _refuse_classifier(path: Path) -> None:
    """A cross-encoder's classification head is not a language model mlx-lm can build: say so,
    rather than fail on its weights."""
    try:
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return
    heads = [a for a in architectures if str(a).endswith("ForSequenceClassification")]
    if heads:
        raise ModelLoadError(
            f"{path.name} is a cross-encoder ({heads[0]}): its classification head is not supported. "
            "Use a causal reranker such as Qwen3-Reranker, which LMX scores by its yes/no answer."
        )


def context_length(config: dict) -> int:
    for key in ("max_position_embeddings", "max_seq_len", "n_positions", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    text = config.get("text_config") or {}
    return int(text.get("max_position_embeddings", 4096))


def max_token_bytes(tokenizer) -> int:
    """UTF-8 bytes of the vocabulary's longest token as written (at least the bytes of text it
    stands for: a byte-level BPE character or SentencePiece's '▁' stands for one byte); 0 when
    the tokenizer does not list its vocabulary."""
    try:
        return max((len(token.encode("utf-8")) for token in tokenizer.get_vocab()), default=0)
    except (AttributeError, TypeError):
        return 0
