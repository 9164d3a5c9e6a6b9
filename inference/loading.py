"""MLX-side helpers the engine thread calls: load a model, build its batch, feed requests in.

Nothing here is called outside the engine thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from inference import attention, batch_layers, cpu_blas, gguf
from inference.errors import ModelLoadError
from inference.generation import Slot
from inference.prompt_cache import nearest_cache
from inference.solo import BUCKETS, Solo, buckets_enabled
from inference.store import ModelSpec


def load(spec: ModelSpec):
    """(model, tokenizer, config, backend) for an MLX-native folder or a GGUF file."""
    path = Path(spec.path)
    if spec.format == "gguf":
        model, tokenizer, described = gguf.load(path)
        config, backend = described.config, "mlx-gguf"
    else:
        from mlx_lm.utils import load as mlx_load

        try:
            model, tokenizer = mlx_load(str(path))
        except (ValueError, OSError, RuntimeError, KeyError) as exc:  # mx.load: RuntimeError on corrupt files
            raise ModelLoadError(f"Cannot load the MLX model at {path.name}: {exc}") from exc
        config, backend = json.loads((path / "config.json").read_text()), "mlx"
    if cpu_blas.should_dequantize():
        model = cpu_blas.dequantize(model)
        backend += cpu_blas.BACKEND
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
    backend's first use of its kernels: on the H100 a server's first request took 930 ms and
    the next ones ~75, and 54.8 s on a fresh machine where MLX's CUDA build compiled its kernels
    (docs/bench/h100-ttft-llama-3.1-8b.md). llama.cpp's server warms up the same way.

    Eight tokens, eight more after them (a chunk after cached tokens: inference.attention) and
    one decoding step; with LMX_PREFILL_BUCKETS on a GPU, also a chunk of each bucket's length,
    as MLX's CUDA build pays 60-100 ms on the first call at each length (and compiles kernels for
    sizes it has not run: on a fresh H100 the first 256-token prompt after the short warm-up took
    31 s, once per machine). Not on the CPU: no such first calls there, and the 16 lengths are
    ~9,500 tokens (over a minute for SmolLM2 here)."""
    from mlx_lm.models.cache import make_prompt_cache

    # Logits too: a short prompt rest is fed with its last token (inference.solo.tail_limit).
    for length in BUCKETS if buckets_enabled() and not cpu_blas.on_cpu() else ():
        cache = make_prompt_cache(model)
        mx.eval(
            model(mx.array([[0] * length], dtype=mx.uint32), cache=cache)[:, -1], [c.state for c in cache]
        )
    cache = make_prompt_cache(model)
    for _chunk in range(2):
        mx.eval(model(mx.array([[0] * 8], dtype=mx.uint32), cache=cache)[:, -1], [c.state for c in cache])
    mx.eval(model(mx.array([[0]], dtype=mx.uint32), cache=cache))
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


def context_length(config: dict) -> int:
    for key in ("max_position_embeddings", "max_seq_len", "n_positions", "seq_length"):
        if isinstance(config.get(key), int):
            return config[key]
    text = config.get("text_config") or {}
    return int(text.get("max_position_embeddings", 4096))


def make_batch(model, *, max_concurrent: int, cache_size: int, cache_bytes: int):
    from mlx_lm.generate import BatchGenerator
    from mlx_lm.models.cache import LRUPromptCache

    from inference import batch_step

    batch = BatchGenerator(
        model,
        completion_batch_size=max_concurrent,
        prefill_batch_size=min(8, max_concurrent),
        stream=mx.default_stream(mx.default_device()),
    )
    batch_step.apply(batch)
    return batch, LRUPromptCache(max_size=cache_size, max_bytes=cache_bytes)


def sampler(request):
    """Greedy at temperature 0; otherwise top-p sampling, with a private key when seeded so the
    same seed gives the same text whatever else shares the batch."""
    from mlx_lm.sample_utils import apply_top_p

    if request.temperature <= 0:
        return None  # the batch's greedy fallback
    inv_temp = 1.0 / request.temperature
    top_p = request.top_p
    state = {"key": mx.random.key(request.seed) if request.seed is not None else None}

    def sample(logprobs: mx.array) -> mx.array:
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        if state["key"] is None:
            return mx.random.categorical(logprobs * inv_temp)
        state["key"], sub = mx.random.split(state["key"])
        return mx.random.categorical(logprobs * inv_temp, key=sub)

    return sample


def processors(request):
    from mlx_lm.sample_utils import make_logits_processors

    return make_logits_processors(
        logit_bias=request.logit_bias,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
    )


def stop_tokens(loaded, request) -> list[tuple[int]]:
    return [] if request.ignore_eos else [(t,) for t in loaded.tokenizer.eos_token_ids]


def insert(batch, prompt_cache, loaded, slot: Slot) -> int:
    """Put a request into the running batch, reusing the longest cached prefix."""
    request = slot.request
    tokens = list(request.prompt_tokens)
    cache, rest = nearest_cache(prompt_cache, loaded.spec.id, tokens)
    cached = len(tokens) - len(rest)
    uid = _insert(
        batch,
        loaded,
        prompt=rest,
        cache=cache,
        in_cache=tokens[:cached],
        max_tokens=request.max_tokens,
        sampler=sampler(request),
        processors=processors(request),
        request=request,
    )
    slot.started(cached)
    return uid


def start_solo(loaded, prompt_cache, slot: Slot) -> Solo:
    request = slot.request
    return Solo(
        loaded,
        slot,
        prompt_cache,
        sampler=sampler(request),
        processors=processors(request),
        stop_tokens={t[0] for t in stop_tokens(loaded, request)},
    )


def resume(batch, loaded, solo: Solo, token: int) -> int:
    """Move a request decoded alone into the batch: its cache, and `token` (sent, not yet in
    the cache) as the prompt."""
    return _insert(
        batch,
        loaded,
        prompt=[token],
        cache=solo.cache,
        in_cache=solo.tokens,
        max_tokens=solo.remaining,
        sampler=solo.sampler,
        processors=solo.processors,
        request=solo.slot.request,
    )


def _insert(batch, loaded, *, prompt, cache, in_cache, max_tokens, sampler, processors, request) -> int:
    from mlx_lm.generate import StopSequences

    (uid,) = batch.insert(
        [prompt],
        max_tokens=[max_tokens],
        caches=[cache] if cache is not None else None,
        all_tokens=[list(in_cache)],
        samplers=[sampler],
        logits_processors=[processors],
        stop_sequences=[StopSequences(stop_tokens(loaded, request))],
    )
    return uid
