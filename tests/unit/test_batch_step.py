"""LMX's decode step (tokens read back with the GIL free) generates what mlx-lm's own step does."""

from types import SimpleNamespace

from mlx_lm.generate import GenerationBatch, PromptProcessingBatch

from inference.engine import loading, sampling
from inference.engine.mlx_compat.generator import HostReadBatch, HostReadPrompts, LMXBatchGenerator
from inference.store import describe_mlx_folder
from tests.conftest import MLX_ID
from tests.unit.test_batch_layers import TINY, _tiny

# greedy, seeded sampling, and penalties (the token-context path), side by side in one batch
REQUESTS = [
    dict(temperature=0.0, seed=None, presence_penalty=0.0),
    dict(temperature=0.9, seed=7, presence_penalty=0.0),
    dict(temperature=0.0, seed=None, presence_penalty=1.5),
    dict(temperature=1.2, seed=11, presence_penalty=0.8),
]


def _request(**kw):
    return SimpleNamespace(top_p=1.0, top_k=0, logit_bias=None, frequency_penalty=0.0, grammar=None, **kw)


def _generate(model, prompts, n: int, *, host_read: bool) -> list[list[int]]:
    batch = LMXBatchGenerator(model, max_concurrent=len(prompts), cache_size=1, cache_bytes=1 << 20)
    batch.use_host_read(host_read)
    requests = [_request(**kw) for kw in REQUESTS]
    uids = batch.insert(
        prompts,
        max_tokens=[n] * len(prompts),
        samplers=[sampling.sampler(r) for r in requests],
        logits_processors=[sampling.processors(r) for r in requests],
    )
    out = {uid: [] for uid in uids}
    while any(len(t) < n for t in out.values()):
        _, generated = batch.next()
        for r in generated:
            out[r.uid].append(r.token)
    batch.close()
    return [out[uid] for uid in uids]


def test_lmx_batches_decode_with_lmx_step():
    batch = LMXBatchGenerator(_tiny("llama-3.1-8b"), max_concurrent=4, cache_size=1, cache_bytes=1 << 20)
    assert type(batch._generation_batch) is HostReadBatch
    batch.insert([[1, 2, 3]], max_tokens=[4])
    batch.next()  # rows leave the prompt batch for decoding: their first step is LMX's too
    assert type(batch._prompt_batch) is HostReadPrompts
    assert type(batch._generation_batch) is HostReadBatch
    batch.use_host_read(False)
    assert type(batch._generation_batch) is GenerationBatch
    assert type(batch._prompt_batch) is PromptProcessingBatch


def test_lmx_step_gives_the_tokens_of_mlx_lm_step_on_a_tiny_model():
    model = _tiny("llama-3.1-8b")
    prompts = [[(7 * i + j) % TINY["vocab_size"] for j in range(3 + i)] for i in range(len(REQUESTS))]
    expected = _generate(model, prompts, 12, host_read=False)
    got = _generate(model, prompts, 12, host_read=True)
    assert got == expected
    assert len({tuple(t) for t in got}) == len(got)


def test_real_model_decodes_the_same_with_lmx_step(settings, model_store):
    """SmolLM2 4-bit: four streams, greedy, seeded and penalised, give mlx-lm's tokens."""
    settings.LMX_CPU_FAST_PATH = "off"
    model, tokenizer, _, _ = loading.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID))
    questions = ["capital of France", "two plus two", "colour of the sky", "largest ocean"]
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)
        for q in questions
    ]
    expected = _generate(model, prompts, 5, host_read=False)
    got = _generate(model, prompts, 5, host_read=True)
    assert got == expected
    assert len({tuple(t) for t in got}) > 1


def test_grammar_rows_admitted_while_others_decode_follow_their_schema_as_in_mlx_lm_s_step(tmp_path):
    """Rows leave the prompt batch for decoding in LMX's step (HostReadPrompts), grammars
    included, and give the tokens mlx-lm's own step gives; each answer follows its schema."""
    import json

    from mlx_lm.generate import StopSequences
    from mlx_lm.tokenizer_utils import TokenizerWrapper
    from transformers import AutoTokenizer

    from benchmarks.random_model import write_tokenizer
    from inference.engine.grammar import GrammarProcessor, tokenizer_for
    from inference.grammars import json_schema

    vocab = TINY["vocab_size"]
    write_tokenizer(tmp_path, vocab)
    tokenizer = TokenizerWrapper(AutoTokenizer.from_pretrained(str(tmp_path)))
    grammar_tokenizer = tokenizer_for(tokenizer, vocab)
    schema = json_schema(
        {
            "type": "object",
            "properties": {"tag": {"enum": ["w7", "w8"]}},
            "required": ["tag"],
            "additionalProperties": False,
        },
        where="test",
    )
    model = _tiny("llama-3.1-8b")

    def run(host_read: bool) -> list[list[int]]:
        batch = LMXBatchGenerator(model, max_concurrent=4, cache_size=1, cache_bytes=1 << 20)
        batch.use_host_read(host_read)
        (free,) = batch.insert([[9, 10, 11]], max_tokens=[30])  # decoding when the others arrive
        out, done = {free: []}, set()
        for step in range(200):
            if step == 2:  # two constrained rows join a batch that is decoding
                eos = StopSequences([(t,) for t in tokenizer.eos_token_ids])
                uids = batch.insert(
                    [[12, 13], [14, 15, 16, 17]],
                    max_tokens=[24, 24],
                    logits_processors=[[GrammarProcessor(grammar_tokenizer, schema)] for _ in range(2)],
                    stop_sequences=[eos, eos],
                )
                out.update({uid: [] for uid in uids})
            _, generated = batch.next()
            for r in generated:
                out[r.uid].append(r.token)
                if r.finish_reason:
                    done.add(r.uid)
            if len(done) == 3:
                break
        batch.close()
        return list(out.values())

    got, expected = run(True), run(False)
    assert got == expected
    for tokens in got[1:]:
        text = "".join(
            tokenizer.convert_ids_to_tokens([t for t in tokens if t not in tokenizer.eos_token_ids])
        )
        assert json.loads(text)["tag"] in ("w7", "w8")
