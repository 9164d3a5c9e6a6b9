"""The engine thread with the real default model, in process: load rules, memory, formats."""

import asyncio
import dataclasses
import gc
from pathlib import Path

import mlx.core as mx
import pytest

from inference.engine.core import Engine
from inference.engine.slot import Slot
from inference.store import describe_gguf, describe_mlx_folder
from inference.wire import Done, Failed, GenerationRequest, Text
from tests.conftest import GGUF_ID, MLX_ID, running_engine


@pytest.fixture
def engine():
    with running_engine(Engine, max_concurrent=4) as eng:
        yield eng


def _spied_slot(engine: Engine, prompt: str, n: int, tokens: list[int], **request) -> Slot:
    """A slot whose generated tokens are also appended to `tokens`."""
    tokenizer = engine.loaded.tokenizer
    slot = Slot(
        GenerationRequest(tokenizer.encode(prompt), n, **request),
        detokenizer=tokenizer.detokenizer,
        eos_token_ids=tokenizer.eos_token_ids,
    )
    original = slot.add_token

    def spy(token, finish_reason, logprobs=None):
        tokens.append(token)
        return original(token, finish_reason, logprobs)

    slot.add_token = spy
    return slot


async def _text_and_end(slot: Slot) -> tuple[str, tuple]:
    """All the text a slot streamed, and its last event's kind and reason, e.g. ("done", "length")."""
    text, last = "", None
    async for event in slot.events():
        text += event.text if isinstance(event, Text) else ""
        last = event
    return text, ending(last)


def ending(event) -> tuple:
    """A request's last event as (kind, why): ("done", finish reason) or ("error", code)."""
    if isinstance(event, Done):
        return ("done", event.finish_reason)
    assert isinstance(event, Failed), event
    return ("error", event.error.code)


def _greedy_tokens(engine: Engine, prompt: str, n: int) -> list[int]:
    tokens: list[int] = []

    async def run():
        slot = _spied_slot(engine, prompt, n, tokens, temperature=0)
        engine.submit(slot)
        async for _event in slot.events():
            pass

    asyncio.run(run())
    return tokens


def test_gguf_and_converted_mlx_folder_give_the_same_greedy_tokens(engine, model_store):
    gguf = describe_gguf(model_store / GGUF_ID, GGUF_ID)
    mlx_folder = describe_mlx_folder(model_store / MLX_ID, MLX_ID)
    engine.load(gguf).result()
    from_gguf = _greedy_tokens(engine, "The capital of France is", 6)
    engine.load(mlx_folder).result()
    from_mlx = _greedy_tokens(engine, "The capital of France is", 6)
    assert len(from_gguf) == 6
    assert from_gguf == from_mlx
    assert "Paris" in engine.loaded.tokenizer.decode(from_mlx)


def test_concurrent_loads_of_one_model_load_it_once(engine, model_store):
    spec = describe_mlx_folder(model_store / MLX_ID, MLX_ID)
    futures = [engine.load(spec) for _ in range(5)]
    results = [f.result() for f in futures]
    loads = [e for e in engine.events if e["type"] == "model_event" and e["action"] == "loaded"]
    assert len(loads) == 1
    assert all(r.model == MLX_ID and not r.already_loaded for r in results)  # one shared load
    again = engine.load(spec).result()
    assert again.already_loaded


def test_different_models_load_one_after_the_other_and_stay_resident_together(engine, model_store):
    a = describe_mlx_folder(model_store / MLX_ID, MLX_ID)
    b = describe_gguf(model_store / GGUF_ID, GGUF_ID)
    fa, fb = engine.load(a), engine.load(b)
    assert fa.result().model == MLX_ID and fb.result().model == GGUF_ID
    actions = [(e["action"], e["model"]) for e in engine.events if e["type"] == "model_event"]
    assert actions == [("loaded", MLX_ID), ("loaded", GGUF_ID)]
    assert [m.spec.id for m in engine.models] == [MLX_ID, GGUF_ID]
    gone = engine.unload(a.path).result()  # one of them
    assert gone.model == MLX_ID and gone.models == (MLX_ID,) and gone.freed_vram_gb > 0.05
    assert [m.spec.id for m in engine.models] == [GGUF_ID]


def test_unload_returns_active_memory_to_its_level_before_the_load(engine, model_store):
    def baseline():
        gc.collect()  # what an engine of an earlier test left for the collector
        mx.eval(mx.random.state)  # MLX's global 8-byte random key lives for the process
        return mx.get_active_memory()

    before = engine.run_on_engine(baseline).result()
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    _greedy_tokens(engine, "Hello", 3)  # the KV cache and prompt cache are freed too
    loaded = engine.run_on_engine(mx.get_active_memory).result()
    assert loaded - before > 50e6
    result = engine.unload().result()
    after = engine.run_on_engine(mx.get_active_memory).result()
    assert after == before
    assert result.freed_vram_gb > 0.05
    assert engine.loaded is None


def test_a_failed_load_leaves_the_engine_serving(engine, model_store, tmp_path):
    from inference.errors import ModelLoadError

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="cannot be used: unsupported GGUF version"):
        engine.load(describe_gguf(bad, "bad.gguf")).result()
    assert engine.loaded is None
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    assert engine.loaded.spec.id == MLX_ID


def test_unsupported_gguf_architecture_is_named():
    from inference.gguf import archs
    from inference.gguf.reader import GGUFError

    with pytest.raises(
        GGUFError, match=r"architecture 'mamba' is not supported \(supported: gemma2, gemma3, llama"
    ):
        archs.lookup("mamba")


def test_mlx_folder_path_is_real(model_store):
    spec = describe_mlx_folder(model_store / MLX_ID, MLX_ID)
    assert (
        Path(spec.path).is_dir()
        and spec.parameter_count == describe_gguf(model_store / GGUF_ID, GGUF_ID).parameter_count
    )


def _run_together(engine: Engine, first: tuple, second: tuple | None, *, join_after: int) -> list[list[int]]:
    """Run `first`; once it has sent `join_after` tokens, submit `second` beside it."""
    outputs: list[list[int]] = [[], []]

    async def run():
        slot = _spied_slot(engine, *first[:2], outputs[0], ignore_eos=True, **first[2])
        engine.submit(slot)
        other = None
        async for _event in slot.events():
            if second is not None and other is None and len(outputs[0]) >= join_after:
                other = _spied_slot(engine, *second[:2], outputs[1], ignore_eos=True, **second[2])
                engine.submit(other)
        if other is not None:
            async for _event in other.events():
                pass

    asyncio.run(run())
    return outputs


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 0.9, "seed": 7}])
def test_a_request_running_alone_keeps_its_tokens_when_another_joins(engine, model_store, sampling):
    """A lone request decodes outside the batch; when a second one arrives it moves into the
    batch without losing, repeating or changing a token (seeded sampling included)."""
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    first = ("The capital of France is", 12, sampling)
    second = ("Cats are", 6, {"temperature": 0})
    alone, _ = _run_together(engine, first, None, join_after=0)
    second_alone, _ = _run_together(engine, second, None, join_after=0)
    joined, beside = _run_together(engine, first, second, join_after=3)
    assert len(alone) == 12
    assert joined == alone
    assert beside == second_alone


def test_a_request_decoded_alone_runs_mlx_lm_layers_and_the_batch_runs_lmx_layers(
    engine, model_store, settings
):
    """With LMX_BATCH_LAYERS on: each token of a lone request comes from mlx-lm's own layers (at
    one row LMX's compute the same and cost Python time per layer); once a second request joins,
    the batch's tokens come from LMX's. The tokens are those of the request decoded alone."""
    import mlx.nn as nn

    from inference.engine.mlx_compat.batch_layers import FoldedQuantizedLinear

    settings.LMX_BATCH_LAYERS = "on"
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    assert "+batch-layers" in engine.loaded.backend
    q_proj = engine.loaded.model.model.layers[0].self_attn.q_proj
    kinds: list[type] = []
    first = ("The capital of France is", 12, {"temperature": 0})
    alone, _ = _run_together(engine, first, None, join_after=0)

    original = engine._step

    def spied_step():
        original()
        kinds.append(type(q_proj))

    engine._step = spied_step
    joined, beside = _run_together(engine, first, ("Cats are", 6, {"temperature": 0}), join_after=3)
    assert joined == alone
    assert len(beside) == 6
    assert kinds[0] is nn.QuantizedLinear  # the first request, decoded alone
    assert kinds[-1] is FoldedQuantizedLinear  # the two together
    assert set(kinds) == {nn.QuantizedLinear, FoldedQuantizedLinear}


def test_a_step_of_many_streams_reaches_the_event_loop_in_one_wake_up(engine, model_store):
    """Every stream gets all its text, and the event loop (which also answers /readyz) is woken
    once per engine step, not once per token of every stream."""
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    tokenizer = engine.loaded.tokenizer
    prompts = ["The capital of France is", "Cats are", "One, two,", "Water boils at"]
    wake_ups = 0

    async def run():
        nonlocal wake_ups
        loop = asyncio.get_running_loop()
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counted(*args, **kwargs):
            nonlocal wake_ups
            wake_ups += 1
            return call_soon_threadsafe(*args, **kwargs)

        loop.call_soon_threadsafe = counted
        slots = [
            Slot(
                GenerationRequest(tokenizer.encode(p), 5, temperature=0, ignore_eos=True),
                detokenizer=tokenizer.detokenizer,
                eos_token_ids=tokenizer.eos_token_ids,
            )
            for p in prompts
        ]
        steps = engine.counters.steps
        for slot in slots:
            engine.submit(slot)
        results = await asyncio.gather(*(_text_and_end(s) for s in slots))
        return results, engine.counters.steps - steps

    results, steps = asyncio.run(run())
    assert [end for _, end in results] == [("done", "length")] * len(prompts)
    assert all(text.strip() for text, _ in results)
    # one wake-up per step, plus one per admission (its "start" event); per token it was 28
    assert wake_ups <= steps + len(prompts)


def test_counters_count_every_token_and_every_ending_in_the_batch(engine, model_store):
    """Ends by length and by a stop string, with three requests decoded together."""
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    spied: list[int] = []
    before = (engine.counters.generated_tokens, engine.counters.completed)

    async def run():
        slots = [
            _spied_slot(engine, "Cats are", 6, spied, temperature=0, ignore_eos=True),
            _spied_slot(engine, "The capital of France is", 12, spied, temperature=0, stop=["Paris"]),
            _spied_slot(engine, "One, two,", 6, spied, temperature=0, ignore_eos=True),
        ]
        for slot in slots:
            engine.submit(slot)
        return await asyncio.gather(*(_text_and_end(s) for s in slots))

    (_, cats), (france, france_end), (_, count) = asyncio.run(run())
    assert cats == count == ("done", "length")
    assert france_end == ("done", "stop") and "Paris" not in france
    assert engine.counters.generated_tokens - before[0] == len(spied)
    assert engine.counters.completed - before[1] == 3


FIRST = (
    "Here is a short story about a lighthouse keeper who lived alone on a rocky island far from the "
    "coast, with only his old dog, a radio and a shelf of books for company, and"
)  # over 32 tokens: the follow-up reuses its cache
FOLLOW = FIRST + " one stormy night a small boat appeared near the rocks, so he"


def _fresh_and_follow_up(engine: Engine, model_store) -> tuple[list[list[int]], list[int], str]:
    """Greedy tokens for FIRST and then FOLLOW (a turn on FIRST's cached prefix) with a fresh
    load, both prompts' token counts, and the backend the load reported."""
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    tokenizer, backend = engine.loaded.tokenizer, engine.loaded.backend
    lengths = [len(tokenizer.encode(FIRST)), len(tokenizer.encode(FOLLOW))]
    out = [_greedy_tokens(engine, FIRST, 8), _greedy_tokens(engine, FOLLOW, 8)]
    engine.unload().result()  # and its prompt cache
    return out, lengths, backend


def test_prefill_buckets_change_no_token_of_a_fresh_prompt_or_a_follow_up(engine, model_store, settings):
    """LMX_PREFILL_BUCKETS pads each prefill chunk to one of a few lengths and trims the padding
    off the cache: greedy answers stay the same, also for a turn that reuses a cached prefix."""
    from inference.engine.solo import bucket

    settings.LMX_PREFILL_BUCKETS = "off"
    plain, (first, follow), backend = _fresh_and_follow_up(engine, model_store)
    assert "+prefill-buckets" not in backend
    settings.LMX_PREFILL_BUCKETS = "on"
    bucketed, _, backend = _fresh_and_follow_up(engine, model_store)
    assert backend.endswith("+prefill-buckets")
    fresh, new = first - 1, follow - first
    assert all(bucket(n) > n for n in (fresh, new - 1, new))  # both prefills were padded
    assert bucketed == plain
    assert len(plain[0]) == len(plain[1]) == 8


def test_a_prompt_rest_fed_with_its_last_token_changes_no_token(engine, model_store, monkeypatch):
    """A short prompt rest goes through the model in one pass with its last token (on a GPU and on
    this CPU's float32 path; this test process runs the 4-bit weights): the same greedy answers
    as feeding all but the last token first, for a fresh prompt and for a follow-up turn."""
    from inference.engine import solo

    passes = []
    real = solo.Solo._forward

    def spy(self, chunk):
        passes.append(len(chunk))
        return real(self, chunk)

    monkeypatch.setattr(solo.Solo, "_forward", spy)
    monkeypatch.setattr(solo, "tail_limit", lambda backend: 1)
    split, (first, follow), _ = _fresh_and_follow_up(engine, model_store)
    assert first - 1 in passes and follow - first - 1 in passes
    passes.clear()
    monkeypatch.setattr(solo, "tail_limit", lambda backend: 64)
    merged, _, _ = _fresh_and_follow_up(engine, model_store)
    assert first in passes and follow - first in passes
    assert merged == split and len(merged[1]) == 8


def test_short_attention_changes_no_token_of_a_follow_up(engine, model_store, settings, monkeypatch):
    """LMX_SHORT_ATTENTION computes a follow-up's prompt chunk outside MLX's fused kernel (on CUDA,
    where that kernel builds a graph per shape): the same greedy answers."""
    from inference.engine.mlx_compat import attention

    unfused = []
    real = attention.unfused_causal

    def spy(queries, keys, values, **kwargs):
        unfused.append(keys.shape[2])  # cached + chunk tokens
        return real(queries, keys, values, **kwargs)

    monkeypatch.setattr(attention, "unfused_causal", spy)
    settings.LMX_SHORT_ATTENTION = "off"
    plain, (_, follow), backend = _fresh_and_follow_up(engine, model_store)
    assert not unfused and "+short-attention" not in backend
    settings.LMX_SHORT_ATTENTION = "on"
    try:
        short, _, backend = _fresh_and_follow_up(engine, model_store)
    finally:
        attention.install(False)  # the load put it in for the whole process
    assert follow - 1 in unfused  # the follow-up's chunk went through it (not only the warm-up's)
    assert "+short-attention" in backend
    assert short == plain and len(short[1]) == 8


def test_the_warm_up_at_load_leaves_no_request_cache_or_count_behind(engine, model_store):
    """A load runs a few tokens through the model before it says it is ready; users see none of
    it: no tokens counted, nothing in the prompt cache, and the first answer is the model's."""
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    assert dataclasses.astuple(engine.counters) == dataclasses.astuple(type(engine.counters)())
    tokens: list[int] = []

    async def run():
        slot = _spied_slot(engine, "The capital of France is", 8, tokens, temperature=0)
        engine.submit(slot)
        text, _ = await _text_and_end(slot)
        return text, slot.cached_tokens

    text, cached = asyncio.run(run())
    assert "Paris" in text and cached == 0
    assert engine.counters.prompt_tokens == len(engine.loaded.tokenizer.encode("The capital of France is"))
    assert engine.counters.generated_tokens == len(tokens) > 0


def test_a_failed_warm_up_is_logged_and_the_model_still_serves(engine, model_store, monkeypatch, caplog):
    from inference.engine import loading

    def broken(model):
        raise RuntimeError("kernel compile failed")

    monkeypatch.setattr(loading, "warm_up", broken)
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
    assert f"Warm-up of {MLX_ID} failed: kernel compile failed" in caplog.text
    assert engine.loaded is not None and len(_greedy_tokens(engine, "The capital of France is", 4)) == 4


def test_a_failure_while_moving_the_lone_request_into_the_batch_fails_it_rather_than_losing_it(
    engine, model_store, monkeypatch
):
    from inference.engine import solo

    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()

    def broken(self):
        raise RuntimeError("handoff broke")

    monkeypatch.setattr(solo.Solo, "handoff", broken)

    async def run():
        tokens: list[int] = []
        first = _spied_slot(engine, "Write a long story.", 200, tokens, temperature=0)
        engine.submit(first)
        events = first.events()
        async for event in events:
            if isinstance(event, Text):
                break  # decoding alone now
        second = _spied_slot(engine, "Cats are", 4, [], temperature=0)
        engine.submit(second)
        rest = [event async for event in events]
        return ending(rest[-1]), await _text_and_end(second)

    first_end, (_, second_end) = asyncio.run(asyncio.wait_for(run(), 60))
    assert first_end == ("error", "internal-error")
    assert second_end == ("error", "internal-error")
    assert engine.loaded is not None and len(_greedy_tokens(engine, "Hello", 2)) == 2
