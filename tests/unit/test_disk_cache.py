"""The prompt caches' disk tier: blocks written off the engine thread, found again by a fresh
generator (a restart), never for another model, never when damaged, within their byte budget."""

import mlx.core as mx
import pytest
from mlx_lm.models.cache import make_prompt_cache

from inference.engine import disk_cache
from inference.engine.disk_cache import DiskTier
from inference.engine.mlx_compat.generator import LMXBatchGenerator
from tests.unit.test_batch_layers import TINY, _tiny

BLOCK = 16
PROMPT = [(11 * i + 5) % TINY["vocab_size"] for i in range(3 * BLOCK + 7)]  # 3 full blocks and more


@pytest.fixture(scope="module")
def model():
    return _tiny("llama-3.1-8b")


def _generator(model, root, *, identity="model-a", kv_bits=None, budget=1 << 30) -> LMXBatchGenerator:
    tier = DiskTier(root, budget_bytes=budget, block=BLOCK)
    return LMXBatchGenerator(
        model,
        max_concurrent=4,
        cache_size=4,
        cache_bytes=1 << 30,
        kv_bits=kv_bits,
        disk=tier.for_model(identity, "tiny"),
    )


def _prefilled(model, generator, tokens):
    """A finished request's cache for `tokens`, as the scheduler remembers it."""
    cache = generator.new_cache()
    mx.eval(model(mx.array([tokens]), cache=cache))
    generator.remember("m", tokens, cache)
    generator.disk.tier.flush()


def _next_logits(model, cache, rest):
    return model(mx.array([rest]), cache=cache)[0, -1]


@pytest.mark.parametrize("kv_bits", [None, 8])
def test_blocks_written_are_found_after_a_restart_and_continue_the_prompt(model, tmp_path, kv_bits):
    first = _generator(model, tmp_path, kv_bits=kv_bits)
    _prefilled(model, first, PROMPT)
    assert first.disk.tier.count == 3 and first.disk.tier.size > 0

    again = _generator(model, tmp_path, kv_bits=kv_bits)  # empty RAM: what a restart sees
    follow_up = [*PROMPT, 3, 4, 5]
    found = again.lookup("m", follow_up)
    assert (found.tier, found.cached) == ("disk", 3 * BLOCK)
    assert found.rest == follow_up[3 * BLOCK :]
    alone = again.new_cache()
    expected = _next_logits(model, alone, follow_up)
    got = _next_logits(model, found.cache, found.rest)
    assert mx.allclose(got, expected, atol=1e-4, rtol=1e-4).item()


def test_a_shared_prefix_is_found_whatever_follows_it(model, tmp_path):
    generator = _generator(model, tmp_path)
    _prefilled(model, generator, PROMPT)
    other = [*PROMPT[: 2 * BLOCK + 3], 1, 2, 3, *PROMPT[2 * BLOCK + 6 :]]  # differs in block 3
    fresh = _generator(model, tmp_path)
    found = fresh.lookup("m", other)
    assert (found.tier, found.cached) == ("disk", 2 * BLOCK)
    assert (found.shared, found.exact) == (2 * BLOCK, False)  # known to the block from disk


def test_another_model_never_finds_them(model, tmp_path):
    _prefilled(model, _generator(model, tmp_path), PROMPT)
    found = _generator(model, tmp_path, identity="model-b").lookup("m", [*PROMPT, 1])
    assert (found.tier, found.cached) == ("none", 0)


def test_a_truncated_block_is_ignored_and_deleted(model, tmp_path):
    _prefilled(model, _generator(model, tmp_path), PROMPT)
    second = sorted((tmp_path / "model-a").glob("00002-*.safetensors"))[0]
    second.write_bytes(second.read_bytes()[:1000])
    fresh = _generator(model, tmp_path)
    found = fresh.lookup("m", [*PROMPT, 1])
    assert (found.tier, found.cached) == ("disk", BLOCK)  # the chain stops before the bad block
    assert not second.exists() and fresh.disk.tier.count == 2


def test_the_byte_budget_is_held_by_dropping_the_least_recently_used(model, tmp_path):
    one_block = _block_bytes(model, tmp_path / "probe")
    generator = _generator(model, tmp_path, budget=int(4.5 * one_block))
    _prefilled(model, generator, PROMPT)  # 3 blocks
    newer = [(7 * i + 1) % TINY["vocab_size"] for i in range(2 * BLOCK + 1)]
    _prefilled(model, generator, newer)  # 2 more: 5 > 4.5, one goes
    tier = generator.disk.tier
    assert tier.count == 4 and tier.size <= 4.5 * one_block
    # the oldest chain lost its deepest block, not its start
    assert generator.disk.reach([*PROMPT, 1], 3)[0] == 2
    assert generator.disk.reach([*newer, 1], 2)[0] == 2


def _block_bytes(model, root) -> int:
    generator = _generator(model, root)
    _prefilled(model, generator, PROMPT[: BLOCK + 1])
    return generator.disk.tier.size


def test_a_partial_write_left_by_a_stop_is_removed_at_start(tmp_path):
    folder = tmp_path / "model-a"
    folder.mkdir()
    (folder / "00001-abc.tmp.safetensors").write_bytes(b"partial")
    tier = DiskTier(tmp_path, budget_bytes=1 << 20, block=BLOCK)
    assert tier.count == 0 and not list(folder.glob("*.tmp.safetensors"))


def test_caches_that_cannot_be_cut_into_blocks_are_not_written(model, tmp_path):
    from mlx_lm.models.cache import RotatingKVCache

    generator = _generator(model, tmp_path)
    assert generator.disk.save(PROMPT, [RotatingKVCache(max_size=8) for _ in model.layers]) == 0
    assert disk_cache.storable(make_prompt_cache(model))


def test_a_cache_larger_than_the_writer_queue_is_written_from_its_start(model, tmp_path, monkeypatch):
    """Copies waiting for the writer are bounded; what does not fit is the end of the prompt,
    left for a later request of it, never the start its chain is found by."""
    one_block = _block_bytes(model, tmp_path / "probe")
    monkeypatch.setattr(disk_cache, "MAX_PENDING_BYTES", int(2.5 * one_block))
    generator = _generator(model, tmp_path)
    generator.disk.tier.flush()
    cache = generator.new_cache()
    mx.eval(model(mx.array([PROMPT]), cache=cache))
    assert generator.disk.save(PROMPT, cache) == 2  # 3 blocks new, room for 2
    generator.disk.tier.flush()
    assert generator.disk.reach([*PROMPT, 1], 3)[0] == 2
    assert generator.disk.save(PROMPT, cache) == 1  # the next request of it writes the rest
    generator.disk.tier.flush()
    assert generator.disk.reach([*PROMPT, 1], 3)[0] == 3
