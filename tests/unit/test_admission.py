"""Short prompts that arrive together are prefilled in one round; long ones as mlx-lm does."""

import asyncio
import threading

from inference.engine.core import Engine
from inference.engine.mlx_compat import admission
from inference.engine.mlx_compat.generator import LMXBatchGenerator
from inference.engine.slot import Slot
from inference.store import describe_mlx_folder
from inference.wire import Done, GenerationRequest
from tests.conftest import MLX_ID, running_engine
from tests.unit.test_batch_layers import TINY, _tiny


def _batch(n: int, length: int, *, widen: bool) -> tuple[list[int], list[list[int]]]:
    """Insert n prompts of `length` tokens into a fresh batch and step it until all decode:
    the number decoding after each step, and each request's first three greedy tokens."""
    batch = LMXBatchGenerator(_tiny("llama-3.1-8b"), max_concurrent=n, cache_size=1, cache_bytes=1 << 20)
    batch.patched = widen  # LMX's prefill width, or mlx-lm's eight a round
    batch.prefill_step_size = batch._prompt_batch.prefill_step_size = 2048  # mlx-lm's chunk, on any device
    prompts = [[(5 * i + j) % TINY["vocab_size"] for j in range(length)] for i in range(n)]
    uids = batch.insert(prompts, max_tokens=[3] * n)
    decoding, tokens = [], {uid: [] for uid in uids}
    while any(len(t) < 3 for t in tokens.values()):
        _, generated = batch.next()
        decoding.append(len(batch._generation_batch))
        for r in generated:
            tokens[r.uid].append(r.token)
    batch.close()
    return decoding, [tokens[uid] for uid in uids]


def test_short_prompts_arriving_together_start_decoding_in_the_same_step():
    rounds, tokens = _batch(24, 12, widen=True)
    eight_at_a_time, same = _batch(24, 12, widen=False)
    assert rounds[1] == 24  # one prefill step, then all 24 decode
    assert eight_at_a_time[1] == 8 and len(eight_at_a_time) > len(rounds)  # more steps, same work
    assert tokens == same  # the same greedy tokens either way


def test_long_prompts_keep_rounds_of_eight():
    """Ten prompts of 400 tokens: eight already pad a round past one prefill chunk (2,048)."""
    rounds, _ = _batch(10, 400, widen=True)
    assert rounds[:2] == [0, 8]
    assert admission.FLOOR == 8


def test_a_round_holds_prompts_while_their_padded_length_fits_one_chunk():
    batch = LMXBatchGenerator(_tiny("llama-3.1-8b"), max_concurrent=64, cache_size=1, cache_bytes=1 << 20)
    lengths = [100] * 12 + [900] + [10] * 30  # a round pads every prompt to its longest
    batch.insert([[3] * n for n in lengths], max_tokens=[2] * len(lengths))
    assert admission.ROUND_TOKENS == 2048
    # the 900-token prompt's first chunk would pad all 13 to a chunk each: past the round's tokens
    assert admission.prefill_width(batch) == 12
    batch.close()


def test_real_model_twelve_requests_arriving_together_get_first_tokens_in_one_step(model_store):
    """SmolLM2: twelve short requests submitted at once; each first token is recorded with the
    engine step it came from. One is decoded alone when it arrives; the other eleven share one
    prefill round instead of two, so they get their first tokens in the same step."""
    with running_engine(Engine, max_concurrent=12) as engine:
        engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result()
        tokenizer = engine.loaded.tokenizer
        first_steps: list[int] = []

        def slot(prompt: str) -> Slot:
            s = Slot(
                GenerationRequest(tokenizer.encode(prompt), 3, temperature=0, ignore_eos=True),
                detokenizer=tokenizer.detokenizer,
                eos_token_ids=tokenizer.eos_token_ids,
            )
            add_token = s.add_token

            def spy(token, finish_reason, logprobs=None):
                if s.first_token_at is None:
                    first_steps.append(engine.counters.steps)
                return add_token(token, finish_reason, logprobs)

            s.add_token = spy
            return s

        async def run():
            slots = [slot(f"Question {i}: name a colour.") for i in range(12)]
            gate = threading.Event()
            held = engine.run_on_engine(gate.wait)  # all twelve queue behind it, as a burst does
            for s in slots:
                engine.submit(s)
            gate.set()
            held.result()

            async def drain(s):
                return [event async for event in s.events()][-1]

            return await asyncio.gather(*(drain(s) for s in slots))

        ends = asyncio.run(run())
    assert [(type(end), end.finish_reason) for end in ends] == [(Done, "length")] * 12
    assert len(first_steps) == 12
    assert len(set(first_steps[1:])) == 1  # the eleven in the batch: one step


def test_a_round_holds_no_more_prompts_than_the_batch_has_room_for():
    batch = LMXBatchGenerator(_tiny("llama-3.1-8b"), max_concurrent=16, cache_size=1, cache_bytes=1 << 20)
    batch.insert([[3] * 10 for _ in range(40)], max_tokens=[2] * 40)
    assert admission.prefill_width(batch) == 16
    batch.close()


def test_the_pacer_prefills_at_full_speed_alone_and_keeps_rounds_near_three_decoding_steps():
    from inference.engine.mlx_compat.admission import DEFAULT_CHUNK, MIN_CHUNK, Pacer

    pacer = Pacer(None)
    assert pacer.chunk(decoding=False, prompts=1) == DEFAULT_CHUNK  # nothing waits for it
    assert pacer.chunk(decoding=True, prompts=1) == 8 * MIN_CHUNK  # not measured yet
    pacer.observe(0.100, decoding=True, prompt_tokens=0)
    assert pacer.chunk(decoding=True, prompts=1) == MIN_CHUNK  # a token's cost measured on the least
    assert Pacer(None, floor=1024).chunk(decoding=True, prompts=1) == 1024  # CUDA's floor
    for _ in range(10):
        pacer.observe(0.100, decoding=True, prompt_tokens=0)  # a decoding step: 100 ms
        pacer.observe(0.100 + 256 * 0.002, decoding=True, prompt_tokens=256)  # 2 ms a prompt token
    assert pacer.chunk(decoding=True, prompts=1) == 96  # (3 - 1) x 100 ms / 2 ms = 100 tokens
    assert pacer.chunk(decoding=True, prompts=3) == MIN_CHUNK  # the budget is shared
    pacer.observe(5.0, decoding=False, prompt_tokens=2048)  # a round alone says nothing of the gap
    assert pacer.chunk(decoding=True, prompts=1) == 96
    assert Pacer(512).chunk(decoding=True, prompts=2) == 256  # LMX_PREFILL_CHUNK=512
