"""What a structured-output row costs a batched decoding step, in parts (#21).

`lmx_bench_kernels --model PATH --masks` runs LMX's batch step (HostReadBatch) on that model at
several batch sizes, pipelined as a server runs it, four ways: no grammar; every row held to a
JSON schema by llguidance (what a json_schema request does: the mask is sent to the device only
when it changed, and inside the schema's string it does not); the same with the mask sent every
step, which isolates the mask's upload; and a fresh allow-everything mask uploaded and applied
each step without llguidance, which isolates llguidance's host work."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

VARIANTS = ("no grammar", "json_schema", "json_schema, mask sent every step", "upload only")


@dataclass
class MaskCost:
    batch: int
    step_ms: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _variant(name: str):
    import mlx.core as mx
    import numpy as np

    from inference.engine import grammar

    apply, mask_rows, send = grammar._apply, grammar.mask_rows, grammar.DeviceWords.send

    def upload_only(logits, rows, last, sent=None):
        batch, vocab = logits.shape
        return apply(logits, np.full((batch, -(-vocab // 32)), -1, dtype=np.int32))

    if name == "json_schema, mask sent every step":
        grammar.DeviceWords.send = lambda self, words: mx.array(words)
    elif name == "upload only":
        grammar.mask_rows = upload_only
    try:
        yield
    finally:
        grammar._apply, grammar.mask_rows, grammar.DeviceWords.send = apply, mask_rows, send


class Subject:
    """The model under test, loaded once for every profile, and its grammars."""

    def __init__(self, model_path: str):
        from mlx_lm import load

        from benchmarks.run import STORY_SCHEMA
        from inference.engine.grammar import tokenizer_for
        from inference.engine.mlx_compat import batch_layers
        from inference.grammars import json_schema

        self.model, tokenizer = load(model_path)
        batch_layers.apply(self.model)
        self.vocab = self.model.args.vocab_size
        self._tokenizer = tokenizer_for(tokenizer, self.vocab)
        self._schema = json_schema(STORY_SCHEMA, where="bench")

    def grammar(self):
        """A fresh request's processor for the benchmark's schema."""
        from inference.engine.grammar import GrammarProcessor

        return GrammarProcessor(self._tokenizer, self._schema)


def measure(subject: Subject, *, batches=(1, 8, 32), steps: int = 48) -> list[MaskCost]:
    model, vocab = subject.model, subject.vocab
    results = []
    for batch in batches:
        cost = MaskCost(batch)
        for name in VARIANTS:
            processors = None
            if name != "no grammar":
                processors = [[subject.grammar()] for _ in range(batch)]
            with _variant(name):
                cost.step_ms[name] = _step_ms(model, vocab, batch, processors, steps)
        results.append(cost)
    return results


def _step_ms(model, vocab: int, batch: int, processors, steps: int) -> float:
    import mlx.core as mx

    from benchmarks.step_profile import pipelined_step_ms
    from inference.engine.mlx_compat.generator import LMXBatchGenerator

    gen = LMXBatchGenerator(model, max_concurrent=batch, cache_size=1, cache_bytes=1 << 20)
    step_ms = pipelined_step_ms(gen, vocab, batch, 32, steps, logits_processors=processors)
    gen.close()
    mx.clear_cache()
    return step_ms


ADMISSION = ("no grammar", "json_schema", "json_schema, first step mlx-lm's")


def admission(
    subject: Subject, *, batch: int = 32, arriving: int = 4, prompt_tokens: int = 32, rounds: int = 3
) -> dict[str, tuple[float, float]]:
    """Streams arriving at a busy batch, `arriving` a step as requests reach a server, each with
    its grammar built as the engine builds it at admission: (median, max) ms from a stream's
    arrival to its first token, per variant (medians over `rounds`, after one round to warm up).
    The last variant gives new rows their first step in mlx-lm's own step (LMX before #21's
    change), which masks grammars row by row."""
    import statistics

    model, vocab = subject.model, subject.vocab
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in ADMISSION}
    for round_ in range(rounds + 1):
        for name in ADMISSION:

            def processors(name=name) -> list:
                return [] if name == "no grammar" else [subject.grammar()]

            waits = _first_tokens(
                model, vocab, batch, arriving, prompt_tokens, processors, mlx_first=name.endswith("mlx-lm's")
            )
            if round_:
                seen[name].append((statistics.median(waits), max(waits)))
    return {name: tuple(statistics.median(r[i] for r in runs) for i in (0, 1)) for name, runs in seen.items()}


def _first_tokens(
    model, vocab, batch, arriving, prompt_tokens, processors, *, mlx_first: bool
) -> list[float]:
    import random
    import time

    import mlx.core as mx
    from mlx_lm.generate import PromptProcessingBatch

    from inference.engine.mlx_compat.generator import LMXBatchGenerator

    gen = LMXBatchGenerator(model, max_concurrent=batch, cache_size=1, cache_bytes=1 << 20)
    if mlx_first:
        gen._prompt_batch.__class__ = PromptProcessingBatch
    prompts = [[random.randrange(6, vocab - 100) for _ in range(prompt_tokens)] for _ in range(batch)]
    arrived: dict[int, float] = {}
    waits: dict[int, float] = {}
    while len(waits) < batch:
        if prompts:
            now, admitted = time.perf_counter(), prompts[:arriving]
            del prompts[:arriving]
            uids = gen.insert(
                admitted,
                max_tokens=[10_000] * len(admitted),
                logits_processors=[processors() for _ in admitted],
            )
            arrived.update(dict.fromkeys(uids, now))
        _, responses = gen.next()
        now = time.perf_counter()
        for r in responses:
            waits.setdefault(r.uid, (now - arrived[r.uid]) * 1000)
    gen.close()
    mx.clear_cache()
    return list(waits.values())


SOLO = ("no grammar", "json_schema")


def solo(subject: Subject, *, tokens: int = 128, rounds: int = 5) -> dict[str, tuple[float, float, float]]:
    """One request decoded alone (engine.solo), as the server runs a lone stream, without and with
    a grammar, taking turns `rounds` times after one round to warm up: medians of (ms a step, ms
    of it the host waited for a token, ms of it computing masks)."""
    import statistics
    import time

    from inference.engine import grammar, solo
    from inference.engine.grammar import GrammarProcessor
    from inference.wire import GenerationRequest

    loaded = _Loaded(subject.model)
    spent = {"wait": 0.0, "mask": 0.0}
    to_host, next_mask = solo.to_host, GrammarProcessor.next_mask

    def timed(key, fn):
        def run(*args):
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent[key] += time.perf_counter() - start

        return run

    solo.to_host = timed("wait", to_host)
    grammar.GrammarProcessor.next_mask = timed("mask", next_mask)
    seen: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SOLO}
    try:
        for round_ in range(rounds + 1):
            for name in SOLO:
                processors = [] if name == "no grammar" else [subject.grammar()]
                slot = _Slot(GenerationRequest(prompt_tokens=list(range(10, 42)), max_tokens=tokens + 8))
                alone = solo.Solo(
                    loaded,
                    slot,
                    (None, slot.request.prompt_tokens),
                    sampler=None,
                    processors=processors,
                    stop_tokens=set(),
                )
                for _ in range(8):
                    alone.step()
                spent.update(wait=0.0, mask=0.0)
                start = time.perf_counter()
                for _ in range(tokens):
                    alone.step()
                per = 1000 / tokens
                if round_:
                    seen[name].append(
                        ((time.perf_counter() - start) * per, spent["wait"] * per, spent["mask"] * per)
                    )
    finally:
        solo.to_host, grammar.GrammarProcessor.next_mask = to_host, next_mask
    return {
        name: tuple(statistics.median(r[i] for r in runs) for i in range(3)) for name, runs in seen.items()
    }


class _Loaded:
    backend = "mlx"

    def __init__(self, model):
        self.model = model


class _Slot:
    """What engine.solo asks of a request's slot."""

    def __init__(self, request):
        self.request = request

    def started(self, cached: int) -> None:
        pass

    def prompt_progress(self, done: int, total: int) -> None:
        pass


def solo_markdown(costs: dict[str, tuple[float, float, float]]) -> str:
    lines = [
        "| one stream decoded alone, ms a token | step | waiting for a token | masks |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {step:.2f} | {wait:.2f} | {mask:.2f} |" for name, (step, wait, mask) in costs.items()
    ]
    return "\n".join(lines)


def admission_markdown(waits: dict[str, tuple[float, float]], *, batch: int, arriving: int) -> str:
    lines = [
        f"| {batch} streams arriving {arriving} a step: first token, ms | median | max |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {median:.1f} | {most:.1f} |" for name, (median, most) in waits.items()]
    return "\n".join(lines)


def markdown(results: list[MaskCost]) -> str:
    lines = [
        "| step, ms (pipelined) | " + " | ".join(f"batch {r.batch}" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    for name in VARIANTS:
        cells = []
        for r in results:
            ms, free = r.step_ms[name], r.step_ms["no grammar"]
            cells.append(f"{ms:.2f}" + ("" if name == "no grammar" else f" ({free / ms:.2f}×)"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
