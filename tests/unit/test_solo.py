"""A request decoded alone (inference.engine.solo.Solo): the forward passes it makes and the tokens it
gives, against mlx-lm's `generate_step` on the same small random Llama."""

from types import SimpleNamespace

import mlx.core as mx
import pytest
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import LRUPromptCache
from mlx_lm.sample_utils import make_logits_processors

from inference.engine import cpu_blas, solo
from inference.engine.mlx_compat.prompt_cache import nearest_cache
from inference.wire import GenerationRequest
from tests.unit.test_loading import _model

F32 = "mlx" + cpu_blas.BACKEND  # this CPU's float32 path: rests up to 64 tokens in one pass
Q4 = "mlx"  # 4-bit weights on this CPU: the output matmul is slow, so only the last token


class _Slot:
    def __init__(self, tokens: list[int], max_tokens: int):
        self.request = GenerationRequest(prompt_tokens=tokens, max_tokens=max_tokens, temperature=0)

    def started(self, cached: int) -> None:
        self.cached = cached

    def prompt_progress(self, done: int, total: int) -> None:
        pass


def _decode(model, tokens, *, backend, prompt_cache=None, processors=None, max_tokens=6):
    """(generated tokens, the cache tokens of each forward pass Solo made) for one request."""
    loaded = SimpleNamespace(model=model, spec=SimpleNamespace(id="m"), backend=backend)
    model.calls.clear()
    request = solo.Solo(
        loaded,
        _Slot(tokens, max_tokens),
        nearest_cache(prompt_cache or LRUPromptCache(), "m", tokens),
        sampler=None,
        processors=processors,
        stop_tokens=set(),
    )
    out = [request.step()[0] for _ in range(max_tokens)]
    if prompt_cache is not None:
        prompt_cache.insert_cache("m", request.tokens, request.cache)
    return out, list(model.calls)


def _mlx_lm(model, tokens, *, processors=None, max_tokens=6) -> list[int]:
    prompt = mx.array(tokens, dtype=mx.uint32)
    steps = generate_step(prompt, model.model, max_tokens=max_tokens, logits_processors=processors)
    return [int(token) for token, _ in steps]


PROMPT = [1, *range(10, 29)]  # 20 tokens (the model's vocabulary: 64; an id past it reads garbage)


def test_a_short_prompt_is_fed_in_one_pass_with_its_last_token_and_gives_mlx_lm_s_tokens():
    model = _model()
    tokens, calls = _decode(model, PROMPT, backend=F32)
    assert calls[0] == (20, 0)  # then one decoding step per token after the first
    assert calls[1:] == [(1, 20 + i) for i in range(5)]
    assert tokens == _mlx_lm(model, PROMPT)


def test_a_rest_longer_than_the_limit_is_prefilled_then_its_last_token_fed():
    model = _model()
    prompt = [1, *(3 + i % 60 for i in range(63))]  # 64 tokens, the limit: still one pass
    assert solo.tail_limit(F32) == 64
    assert _decode(model, prompt, backend=F32)[1][0] == (64, 0)
    longer = [*prompt, 5]
    tokens, calls = _decode(model, longer, backend=F32)
    assert calls[:2] == [(64, 0), (1, 64)]
    assert tokens == _mlx_lm(model, longer)


def test_with_4_bit_weights_on_the_cpu_only_the_last_token_goes_with_the_sample():
    model = _model()
    tokens, calls = _decode(model, PROMPT, backend=Q4)
    assert calls[:2] == [(19, 0), (1, 19)]
    assert tokens == _mlx_lm(model, PROMPT)


def test_a_follow_up_feeds_only_its_new_tokens_in_one_pass():
    model = _model()
    prompt_cache = LRUPromptCache()
    prompt = [1, *range(20, 60)]  # long enough to be worth reusing
    first, _ = _decode(model, prompt, backend=F32, prompt_cache=prompt_cache)
    follow = [*prompt, *first[:-1], 40, 41, 42]  # the answer (its last token never fed), then 3 new
    tokens, calls = _decode(model, follow, backend=F32, prompt_cache=prompt_cache)
    assert calls[0] == (3, len(follow) - 3)
    assert tokens == _mlx_lm(model, follow)


@pytest.mark.parametrize("backend", [F32, Q4])
def test_logits_processors_see_every_prompt_token_either_way(backend):
    model = _model()
    processors = make_logits_processors(repetition_penalty=5.0, repetition_context_size=64)
    prompt = [1, *[7, 8, 9] * 6]  # a penalty on these changes what greedy picks
    tokens, _ = _decode(model, prompt, backend=backend, processors=processors, max_tokens=8)
    assert tokens == _mlx_lm(model, prompt, processors=processors, max_tokens=8)
    assert tokens != _mlx_lm(model, prompt, max_tokens=8)


def test_prefill_buckets_pad_the_one_pass_and_change_no_token(settings):
    model = _model()
    settings.LMX_PREFILL_BUCKETS = "on"
    tokens, calls = _decode(model, PROMPT, backend=F32)
    assert calls[0] == (32, 0) and calls[1] == (1, 20)  # padded, then cut back to the 20 real tokens
    assert tokens == _mlx_lm(model, PROMPT)
