"""Two resident models decoding at once: stepped in turn on one thread, or each on its own.

The engine steps resident models in turn on its one thread, so a round of two models pays each
model's host work (building the step's graph, handing it to MLX) one after the other; with a
step that is mostly host work (the GPU), two models of n rows reach ~0.63x of one model of 2n
rows (#23). MLX evaluates with the GIL released and, since 0.31.2, lets each thread evaluate on
its own stream, so a model stepped on its own thread can build its graph while the other's is
being encoded and run. `lmx_bench_kernels --model PATH --two-models` measures how much of the gap
that closes, with LMX's batch generator on two copies of one model, before the engine is
changed for it.
"""

from __future__ import annotations

import statistics
import time

VARIANTS = ("one model, 2n rows", "two models, n each, in turn", "two models, n each, two threads")


def _prefilled(model, vocab: int, rows: int):
    """A batch generator made on the calling thread (its default stream is that thread's), with
    `rows` prompts prefilled and a few steps taken."""
    from benchmarks.step_profile import prefill
    from inference.engine.mlx_compat.generator import LMXBatchGenerator

    gen = LMXBatchGenerator(model, max_concurrent=rows, cache_size=1, cache_bytes=1 << 20)
    prefill(gen, vocab, rows, 32)
    return gen


def _steps(gen, steps: int) -> None:
    import mlx.core as mx

    for _ in range(steps):
        gen.next()
    mx.synchronize()


def _close(gen) -> None:
    import mlx.core as mx

    gen.close()
    mx.synchronize()
    mx.clear_cache()


def _in_turn(models, vocab: int, rows: int, steps: int) -> float:
    """Aggregate tok/s of `rows` rows on each of `models`, stepped in turn on this thread."""
    import mlx.core as mx

    gens = [_prefilled(m, vocab, rows) for m in models]
    start = time.perf_counter()
    for _ in range(steps):
        for gen in gens:
            gen.next()
    mx.synchronize()
    elapsed = time.perf_counter() - start
    for gen in gens:
        _close(gen)
    return len(gens) * rows * steps / elapsed


def _on_threads(models, vocab: int, rows: int, steps: int) -> float:
    """The same with each model on its own thread, as the engine runs a second model
    (inference.engine.model_thread)."""
    from inference.engine.model_thread import ModelThread

    threads = [ModelThread(f"bench-model-{k}") for k in range(len(models))]
    try:
        gens = [t.call(lambda m=m: _prefilled(m, vocab, rows)) for t, m in zip(threads, models, strict=True)]
        start = time.perf_counter()
        running = [t.submit(lambda g=g: _steps(g, steps)) for t, g in zip(threads, gens, strict=True)]
        for done in running:
            done.result()
        elapsed = time.perf_counter() - start
        for t, g in zip(threads, gens, strict=True):
            t.call(lambda g=g: _close(g))
    finally:
        for t in threads:
            t.stop()
    return len(gens) * rows * steps / elapsed


def measure(model_path: str, *, rows: int = 16, steps: int = 64, rounds: int = 3) -> dict[str, float]:
    """Median aggregate tok/s of each variant over `rounds` turns (variants alternate)."""
    from mlx_lm import load

    from inference.engine.mlx_compat import batch_layers

    models = []
    for _ in range(2):  # two copies, as two resident models are
        model, _tokenizer = load(model_path)
        batch_layers.apply(model)
        models.append(model)
    vocab = models[0].args.vocab_size
    runs = {
        VARIANTS[0]: lambda: _in_turn(models[:1], vocab, 2 * rows, steps),
        VARIANTS[1]: lambda: _in_turn(models, vocab, rows, steps),
        VARIANTS[2]: lambda: _on_threads(models, vocab, rows, steps),
    }
    for fn in runs.values():  # compiles and first shapes
        fn()
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name, fn in runs.items():
            samples[name].append(fn())
    return {name: statistics.median(values) for name, values in samples.items()}


def markdown(results: dict[str, float], *, rows: int, name: str) -> str:
    base = results[VARIANTS[0]]
    lines = [
        f"Two copies of {name} decoding at once, n = {rows} (LMX's batch generator, medians)",
        "",
        "| variant | aggregate tok/s | / one model |",
        "|---|---:|---:|",
    ]
    lines += [f"| {v} | {results[v]:.1f} | {results[v] / base:.2f}× |" for v in VARIANTS]
    return "\n".join(lines)
