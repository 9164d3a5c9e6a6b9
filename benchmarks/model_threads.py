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
import threading
import time

VARIANTS = ("one model, 2n rows", "two models, n each, in turn", "two models, n each, two threads")


def _prefilled(model, vocab: int, rows: int, offset: int):
    """A batch generator made on the calling thread (its default stream is that thread's), with
    `rows` prompts prefilled and a few steps taken."""
    import mlx.core as mx

    from inference.engine.mlx_compat.generator import LMXBatchGenerator

    gen = LMXBatchGenerator(model, max_concurrent=rows, cache_size=1, cache_bytes=1 << 20)
    prompts = [[(7 + 13 * (i + offset) + 31 * j) % (vocab - 10) + 6 for j in range(32)] for i in range(rows)]
    gen.insert(prompts, max_tokens=[100_000] * rows)
    while len(gen._generation_batch) < rows:
        gen.next()
    for _ in range(4):
        gen.next()
    mx.synchronize()
    return gen


def _close(*gens) -> None:
    import mlx.core as mx

    for gen in gens:
        gen.close()
    mx.synchronize()
    mx.clear_cache()


def _one(model, vocab: int, rows: int, steps: int) -> float:
    import mlx.core as mx

    gen = _prefilled(model, vocab, 2 * rows, 0)
    start = time.perf_counter()
    for _ in range(steps):
        gen.next()
    mx.synchronize()
    elapsed = time.perf_counter() - start
    _close(gen)
    return 2 * rows * steps / elapsed


def _turns(models, vocab: int, rows: int, steps: int) -> float:
    import mlx.core as mx

    gens = [_prefilled(m, vocab, rows, k * rows) for k, m in enumerate(models)]
    start = time.perf_counter()
    for _ in range(steps):
        for gen in gens:
            gen.next()
    mx.synchronize()
    elapsed = time.perf_counter() - start
    _close(*gens)
    return 2 * rows * steps / elapsed


def _threads(models, vocab: int, rows: int, steps: int) -> float:
    import mlx.core as mx

    ready = threading.Barrier(len(models) + 1)
    done = threading.Barrier(len(models) + 1)
    failures: list[BaseException] = []

    def run(model, k: int) -> None:
        try:
            gen = _prefilled(model, vocab, rows, k * rows)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)
            ready.abort()
            return
        try:
            ready.wait()
            for _ in range(steps):
                gen.next()
            mx.synchronize()
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)
        finally:
            _close(gen)
            done.wait()
            mx.clear_streams()

    workers = [threading.Thread(target=run, args=(m, k), daemon=True) for k, m in enumerate(models)]
    for w in workers:
        w.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    if not failures:
        done.wait()
    elapsed = time.perf_counter() - start
    for w in workers:
        w.join()
    if failures:
        raise failures[0]
    return 2 * rows * steps / elapsed


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
        VARIANTS[0]: lambda: _one(models[0], vocab, rows, steps),
        VARIANTS[1]: lambda: _turns(models, vocab, rows, steps),
        VARIANTS[2]: lambda: _threads(models, vocab, rows, steps),
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
    lines += [f"| {v} | {results[v]:.1f} | {results[v] / base:.2f}x |" for v in VARIANTS]
    return "\n".join(lines)
