"""A grammar is followed whatever the tokenizer: one llguidance cannot read from its JSON (a
word-level vocabulary with a WordPiece decoder, as the benchmark's random models have) is given
to it token by token."""

import json

import mlx.core as mx
import numpy as np
from mlx_lm.tokenizer_utils import TokenizerWrapper
from transformers import AutoTokenizer

from benchmarks.random_model import write_tokenizer
from inference.engine.grammar import GrammarProcessor, tokenizer_for
from inference.grammars import json_schema

SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 9}, "tag": {"enum": ["a1", "b2"]}},
    "required": ["n", "tag"],
    "additionalProperties": False,
}


def test_random_logits_held_to_a_schema_by_a_word_level_tokenizer(tmp_path):
    write_tokenizer(tmp_path, 3000)
    tokenizer = TokenizerWrapper(AutoTokenizer.from_pretrained(str(tmp_path)))
    grammar_tokenizer = tokenizer_for(tokenizer, 3072)  # logits wider than the vocabulary
    processor = GrammarProcessor(grammar_tokenizer, json_schema(SCHEMA, where="test"))
    rng = np.random.default_rng(0)
    tokens = [1]
    for _ in range(40):
        logits = mx.array(rng.normal(size=(1, 3072)).astype(np.float32))
        masked = processor(mx.array(tokens), logits)
        token = int(mx.argmax(masked, axis=-1).item())
        if token in tokenizer.eos_token_ids:
            break
        tokens.append(token)
    text = "".join(tokenizer.convert_ids_to_tokens(tokens[1:]))
    answer = json.loads(text)
    assert 3 <= answer["n"] <= 9 and answer["tag"] in ("a1", "b2")


def test_a_batch_s_grammars_are_applied_in_one_mask_and_free_rows_keep_their_logits(tmp_path):
    from inference.engine.grammar import mask_rows

    write_tokenizer(tmp_path, 3000)
    tokenizer = TokenizerWrapper(AutoTokenizer.from_pretrained(str(tmp_path)))
    grammar_tokenizer = tokenizer_for(tokenizer, 3072)
    alone = GrammarProcessor(grammar_tokenizer, json_schema(SCHEMA, where="test"))
    batched = GrammarProcessor(grammar_tokenizer, json_schema(SCHEMA, where="test"))
    rng = np.random.default_rng(1)
    logits = mx.array(rng.normal(size=(3, 3072)).astype(np.float32))
    masked = mask_rows(logits, [(1, batched)], last=[0, 0, 0])  # the first call: after the prompt
    expected = alone(mx.array([1]), logits[1:2])
    assert mx.array_equal(masked[0], logits[0]) and mx.array_equal(masked[2], logits[2])
    assert mx.array_equal(masked[1:2], expected)
    allowed = [int(i) for i in np.nonzero(np.isfinite(np.array(masked[1])))[0]]
    assert tokenizer.convert_ids_to_tokens(allowed) == ["{"]
    # the next step consumes the token each was given, and both stay in step
    token = allowed[0]
    again = mask_rows(logits, [(1, batched)], last=[7, token, 9])
    alone.advance(token)
    assert mx.array_equal(again[1:2], alone(mx.array([1, token]), logits[1:2]))


def test_masks_as_wide_as_the_logits_are_written_in_place_and_a_failed_matcher_allows_only_the_end(
    tmp_path,
):
    from inference.engine.grammar import mask_rows

    write_tokenizer(tmp_path, 3072)  # the tokenizer's masks exactly as wide as the logits
    tokenizer = TokenizerWrapper(AutoTokenizer.from_pretrained(str(tmp_path)))
    grammar_tokenizer = tokenizer_for(tokenizer, 3072)
    grammar = json_schema(SCHEMA, where="test")
    alone = GrammarProcessor(grammar_tokenizer, grammar)
    rows = [
        (0, GrammarProcessor(grammar_tokenizer, grammar)),
        (2, GrammarProcessor(grammar_tokenizer, grammar)),
    ]
    logits = mx.array(np.random.default_rng(2).normal(size=(3, 3072)).astype(np.float32))
    masked = mask_rows(logits, rows, last=[0, 0, 0])
    expected = alone(mx.array([1]), logits[:1])
    assert mx.array_equal(masked[0:1], expected) and mx.array_equal(masked[1], logits[1])
    assert mx.array_equal(
        masked[2:3], alone.__class__(grammar_tokenizer, grammar)(mx.array([1]), logits[2:3])
    )
    brace = tokenizer.convert_tokens_to_ids("{")
    closing = tokenizer.convert_tokens_to_ids("}")
    # row 0 follows the grammar; row 2 is given a token the grammar forbids (its matcher fails)
    again = mask_rows(logits, rows, last=[brace, 5, closing])
    alone.advance(brace)
    assert mx.array_equal(again[0:1], alone(mx.array([1, brace]), logits[:1]))
    allowed = [int(i) for i in np.nonzero(np.isfinite(np.array(again[2])))[0]]
    assert allowed and set(allowed) <= set(tokenizer.eos_token_ids)


def test_a_kept_device_mask_is_sent_again_only_when_it_changed_and_never_changes_a_built_graph():
    from inference.engine.grammar import DeviceWords, masked

    rng = np.random.default_rng(3)
    words = rng.integers(-(2**31), 2**31 - 1, size=(4, 8), dtype=np.int32)
    logits = mx.array(rng.normal(size=(4, 256)).astype(np.float32))
    sent = DeviceWords()
    first = sent.send(words)
    before = masked(logits, first)  # built, not yet evaluated
    assert sent.send(words.copy()) is first  # the same mask: nothing sent
    changed = words.copy()
    changed[2] = rng.integers(-(2**31), 2**31 - 1, size=8, dtype=np.int32)
    second = sent.send(changed)
    assert second is not first and np.array_equal(np.array(second), changed)
    assert np.array_equal(np.array(before), np.array(masked(logits, mx.array(words))))
    assert np.array_equal(np.array(first), words)
    rows = sent.send(changed[:3])  # fewer rows (a request ended): the whole mask is sent
    assert np.array_equal(np.array(rows), changed[:3])
    everything = rng.integers(-(2**31), 2**31 - 1, size=(3, 8), dtype=np.int32)
    assert np.array_equal(np.array(sent.send(everything)), everything)
