"""One benchmark run: mlx-lm in-process, LMX and mlx_lm.server on the same kind of prompts; then
the table with ratios and targets.

Where the model fits in memory twice, LMX's and mlx-lm's single-stream trials take turns while
both hold it (the machine's speed drifts between minutes); else mlx-lm runs first and is freed
before LMX starts. mlx_lm.server runs last, alone."""

from __future__ import annotations

import asyncio
import gc
import platform
import random
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from benchmarks import http_load, pool, report
from benchmarks.servers import ROOT, start_lmx, start_peer
from inference import conf


@dataclass
class Options:
    model_id: str
    model_path: str
    streams: list[int]
    prompt_tokens: int = 256
    gen_tokens: int = 128
    sweep_prompt_tokens: int = 32  # short prompts: the sweep measures decoding, not prefill
    conversation_tokens: int = 2000
    trials: int = 5
    gguf_id: str | None = None
    inprocess: bool = True
    peer: bool = True
    url: str | None = None  # a running LMX; else one is started
    two_models: bool = False  # the pool's rows: a twin of the model resident beside it, JIT load
    alternated: bool = False  # single-stream trials of LMX and in-process took turns (set by run)
    workdir: Path = field(default_factory=lambda: ROOT / "var" / "bench")


@dataclass
class SystemResult:
    ttft_ms: float | None = None
    prompt_tps: float | None = None
    decode_tps: float | None = None
    aggregate: dict[int, float] = field(default_factory=dict)
    errors: int = 0
    turn_ttft_ms: tuple[float, float] | None = None  # first and second turn of the long chat
    seen_turn_ttft_ms: tuple[float, float] | None = None  # the same, a second chat of that length
    readyz_ms: tuple[float, float] | None = None  # p50, p99 while the most streams run
    first_token_ms: tuple[float, float, float] | None = None  # min, median, max over the most streams
    gguf_decode_tps: float | None = None
    gguf_native_decode_tps: float | None = None  # the MLX-native copy, reloaded right after the GGUF
    decode_trials: list[float | None] = field(default_factory=list)  # one-stream tok/s, in trial order
    # streams -> (tok/s unconstrained, tok/s with a json_schema response_format), chat, aggregate
    structured: dict[int, tuple[float, float]] = field(default_factory=dict)
    # streams -> StructuredParts: where a constrained stream's time goes, per request or per token
    structured_parts: dict[int, object] = field(default_factory=dict)
    pool: object = None  # benchmarks.pool.PoolResult, with --two-models
    notes: list[str] = field(default_factory=list)


class Prompts:
    """Distinct random prompts of exact token length (no two requests share a cached prefix)."""

    def __init__(self, tokenizer, length: int, seed: int = 0):
        self.tokenizer, self.length = tokenizer, length
        self.rng = random.Random(seed)
        self.vocab = min(tokenizer.vocab_size, 30000)

    def make(self, length: int | None = None) -> tuple[str, list[int]]:
        length = length or self.length
        ids = [self.rng.randrange(16, self.vocab) for _ in range(length + 8)]
        text = self.tokenizer.decode(ids)
        ids = self.tokenizer.encode(text)[:length]
        text = self.tokenizer.decode(ids)
        return text, self.tokenizer.encode(text)


def completion_body(model: str, text: str, max_tokens: int) -> dict:
    return {
        "model": model,
        "prompt": text,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }


def _summarize(result: SystemResult, trials: list[tuple[float, int, float | None] | None]) -> None:
    """Medians of single-stream trials, each (ttft seconds, prompt tokens, decode tok/s), or None
    where the request failed; the decode rates are kept in order too."""
    result.decode_trials = [t[2] if t else None for t in trials]
    singles = [t for t in trials if t]
    if singles:
        result.ttft_ms = statistics.median(s[0] for s in singles) * 1000
        result.prompt_tps = statistics.median(s[1] / s[0] for s in singles)
        rates = [s[2] for s in singles if s[2]]
        result.decode_tps = statistics.median(rates) if rates else None


def _server_warm_up(base: str, model: str, prompts: Prompts) -> None:
    asyncio.run(
        http_load.run_streams(base, "/v1/completions", [completion_body(model, prompts.make(32)[0], 8)])
    )


def _server_single(base: str, model: str, prompts: Prompts, opts: Options, result: SystemResult):
    text, ids = prompts.make()
    (one,), _ = asyncio.run(
        http_load.run_streams(base, "/v1/completions", [completion_body(model, text, opts.gen_tokens)])
    )
    if one.error:
        result.errors += 1
        result.notes.append(one.error)
        return None
    return one.ttft_s, len(ids), one.decode_tps


def _inprocess_single(engine, prompts: Prompts, opts: Options):
    one = engine.single(prompts.make()[1], opts.gen_tokens)
    return one.ttft_s, one.prompt_tokens, one.decode_tps


def server_singles(base: str, model: str, prompts: Prompts, opts: Options, result: SystemResult) -> None:
    _server_warm_up(base, model, prompts)
    _summarize(result, [_server_single(base, model, prompts, opts, result) for _ in range(opts.trials)])


def alternate_singles(
    base: str,
    model: str,
    lmx: tuple[SystemResult, Prompts],
    inproc: tuple[SystemResult, Prompts],
    engine,
    opts,
) -> None:
    """Single-stream trials of LMX and of mlx-lm in-process, taking turns (ABBA), so both see the
    same machine: on the H100 one-stream decode moved 124-161 tok/s between runs minutes apart,
    far more than the difference measured."""
    (lmx_result, lmx_prompts), (inproc_result, inproc_prompts) = lmx, inproc
    _server_warm_up(base, model, lmx_prompts)
    engine.single(inproc_prompts.make(32)[1], 8)
    lmx_trials, inproc_trials = [], []
    turns = [
        lambda: lmx_trials.append(_server_single(base, model, lmx_prompts, opts, lmx_result)),
        lambda: inproc_trials.append(_inprocess_single(engine, inproc_prompts, opts)),
    ]
    for trial in range(opts.trials):
        for turn in turns if trial % 2 == 0 else reversed(turns):
            turn()
    _summarize(lmx_result, lmx_trials)
    _summarize(inproc_result, inproc_trials)


def measure_server(
    base: str, model: str, prompts: Prompts, opts: Options, *, lmx: bool, result=None
) -> SystemResult:
    """The concurrency sweep and the conversation; the single-stream trials too unless `result`
    already has them (alternate_singles)."""
    if result is None:
        result = SystemResult()
        server_singles(base, model, prompts, opts, result)
    run = asyncio.run
    most = max(opts.streams)
    for n in opts.streams:
        # warm-up at this batch size: kernels for new shapes are compiled on first use
        warm = [completion_body(model, prompts.make(opts.sweep_prompt_tokens)[0], 4) for _ in range(n)]
        run(http_load.run_streams(base, "/v1/completions", warm))
        bodies = [
            completion_body(model, prompts.make(opts.sweep_prompt_tokens)[0], opts.gen_tokens)
            for _ in range(n)
        ]
        if lmx and n == most:
            results, wall, latencies = run(_streams_with_probe(base, bodies))
            result.readyz_ms = (
                http_load.percentile(latencies, 50) * 1000,
                http_load.percentile(latencies, 99) * 1000,
            )
        else:
            results, wall = run(http_load.run_streams(base, "/v1/completions", bodies))
        failed = [r for r in results if r.error]
        result.errors += len(failed)
        result.notes.extend(r.error for r in failed[:2])
        result.aggregate[n] = sum(r.tokens for r in results if not r.error) / wall
        if n == most:  # when each got its first token: admitted in one prefill round, or over several
            firsts = sorted(r.ttft_s * 1000 for r in results if not r.error and r.ttft_s is not None)
            if firsts:
                result.first_token_ms = (firsts[0], statistics.median(firsts), firsts[-1])

    if lmx:
        for n in sorted({1, most}):
            measured = _structured(base, model, prompts, opts, n)
            if measured is not None:
                result.structured[n], result.structured_parts[n] = measured
    result.turn_ttft_ms = run(_conversation(base, model, prompts, opts, follow_tokens=24))
    result.seen_turn_ttft_ms = run(_conversation(base, model, prompts, opts, follow_tokens=40))
    return result


# A string longer than any run generates: the grammar stays inside it, so every token is masked.
STORY_SCHEMA = {
    "type": "object",
    "properties": {"story": {"type": "string", "minLength": 100_000}},
    "required": ["story"],
}


def chat_body(model: str, text: str, max_tokens: int, *, schema: dict | None = None) -> dict:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "story", "schema": schema}}
    return body


@dataclass
class StructuredParts:
    """Medians over the streams of both turns, (unconstrained, json_schema) each: a grammar's cost
    per request shows in the first token, its cost per step in the gap between tokens."""

    ttft_ms: tuple[float, float]
    gap_ms: tuple[float, float]


def _parts(results: dict[bool, list]) -> StructuredParts:
    def gap(r) -> float:
        return statistics.median(b - a for a, b in zip(r.times, r.times[1:], strict=False)) * 1000

    def median(values) -> float:
        values = list(values)
        return statistics.median(values) if values else float("nan")

    return StructuredParts(
        ttft_ms=tuple(median(r.ttft_s * 1000 for r in results[c] if r.ttft_s) for c in (False, True)),
        gap_ms=tuple(median(gap(r) for r in results[c] if len(r.times) > 1) for c in (False, True)),
    )


def _structured(
    base: str, model: str, prompts: Prompts, opts: Options, n: int
) -> tuple[tuple[float, float], StructuredParts] | None:
    """Aggregate decode tok/s of n chat streams without and with a json_schema, taking turns
    (medians; five times at one stream, whose rounds of about a second are noisy on a GPU
    lease, twice at more), and where the difference goes; None where the model cannot follow a
    JSON grammar (a word-level test vocabulary has no '{')."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    streams: dict[bool, list] = {False: [], True: []}
    warm_up = chat_body(model, prompts.make(opts.sweep_prompt_tokens)[0], 8, schema=STORY_SCHEMA)
    asyncio.run(http_load.run_streams(base, "/v1/chat/completions", [warm_up] * n))
    for constrained in (False, True) * (5 if n == 1 else 2):
        schema = STORY_SCHEMA if constrained else None
        bodies = [
            chat_body(model, prompts.make(opts.sweep_prompt_tokens)[0], opts.gen_tokens, schema=schema)
            for _ in range(n)
        ]
        results, wall = asyncio.run(http_load.run_streams(base, "/v1/chat/completions", bodies))
        if any(r.error for r in results):
            return None
        rates[constrained].append(sum(r.tokens for r in results) / wall)
        streams[constrained] += results
    return (statistics.median(rates[False]), statistics.median(rates[True])), _parts(streams)


async def _streams_with_probe(base, bodies):
    with http_load.ProbePoller(base, "/readyz") as poller:
        results, wall = await http_load.run_streams(base, "/v1/completions", bodies)
    return results, wall, poller.latencies


async def _conversation(
    base: str, model: str, prompts: Prompts, opts: Options, *, follow_tokens: int
) -> tuple[float, float]:
    """TTFT of the first and of the second turn of a chat whose first message is long.

    The first such chat after start is the first prompt of that length the server runs, and on
    MLX's CUDA build a first call at a new length costs 60-100 ms more than the next, which makes
    the ratio look better than a user sees; so a second chat of the same length, with a
    follow-up of a length not run before, is measured too (docs/BENCHMARKS.md, "Second turn")."""
    long_text, _ = prompts.make(opts.conversation_tokens)
    messages = [{"role": "user", "content": long_text}]
    body = {"model": model, "messages": messages, "max_tokens": 16, "temperature": 0, "stream": True}
    (first,), _ = await http_load.run_streams(base, "/v1/chat/completions", [{**body, "ignore_eos": True}])
    follow = prompts.make(follow_tokens)[0]
    messages = [*messages, {"role": "assistant", "content": first.text}, {"role": "user", "content": follow}]
    (second,), _ = await http_load.run_streams(
        base, "/v1/chat/completions", [{**body, "messages": messages, "ignore_eos": True}]
    )
    if first.ttft_s is None or second.ttft_s is None:
        raise RuntimeError(f"conversation failed: {first.error or second.error}")
    return first.ttft_s * 1000, second.ttft_s * 1000


def inprocess_sweep(engine, prompts: Prompts, opts: Options, result: SystemResult) -> None:
    for n in opts.streams:
        engine.batch([prompts.make(opts.sweep_prompt_tokens)[1] for _ in range(n)], 4)  # warm-up
        tokens, wall = engine.batch(
            [prompts.make(opts.sweep_prompt_tokens)[1] for _ in range(n)], opts.gen_tokens
        )
        result.aggregate[n] = tokens / wall


def measure_inprocess(opts: Options, prompts: Prompts) -> SystemResult:
    """Everything in-process, before LMX starts (when the model does not fit twice)."""
    from benchmarks.inprocess import InProcess

    result = SystemResult()
    engine = InProcess(opts.model_path)
    try:
        engine.single(prompts.make(32)[1], 8)  # warm-up
        _summarize(result, [_inprocess_single(engine, prompts, opts) for _ in range(opts.trials)])
        inprocess_sweep(engine, prompts, opts, result)
    finally:
        _free(engine)
    return result


def _free(engine) -> None:
    engine.close()
    gc.collect()


def fits_twice(model_path: str) -> bool:
    """Whether mlx-lm in-process can hold the model while LMX holds it too (with room for caches)."""
    from inference.engine import loading

    weights = sum(p.stat().st_size for p in Path(model_path).glob("*.safetensors"))
    memory = loading.device_memory() or psutil.virtual_memory().total
    return 2 * weights <= 0.8 * memory


def measure_gguf(
    base: str, gguf_id: str, native_id: str, prompts: Prompts, opts: Options
) -> tuple[float | None, float | None]:
    """Decode tok/s of the GGUF copy, then of the MLX-native model loaded again right after, each
    the median of `trials` requests: one window for both, as on a small machine one stream's
    speed drifts more between the start and the end of a run than the target's 10 %."""
    return _decode_rate(base, gguf_id, prompts, opts), _decode_rate(base, native_id, prompts, opts)


def _decode_rate(base: str, model_id: str, prompts: Prompts, opts: Options) -> float | None:
    with httpx.Client(base_url=base, timeout=None) as http:
        reply = http.post("/admin/models/load", json={"model": model_id})
        reply.raise_for_status()
    warm = prompts.make(32)[0]
    asyncio.run(http_load.run_streams(base, "/v1/completions", [completion_body(model_id, warm, 8)]))
    rates = []
    for _ in range(opts.trials):
        (one,), _ = asyncio.run(
            http_load.run_streams(
                base, "/v1/completions", [completion_body(model_id, prompts.make()[0], opts.gen_tokens)]
            )
        )
        if one.decode_tps:
            rates.append(one.decode_tps)
    return statistics.median(rates) if rates else None


def twin_name(opts: Options) -> str:
    return Path(opts.model_path).name + pool.TWIN_SUFFIX


def measure_pool(base: str, opts: Options, prompts: Prompts):
    """Two models resident (the model and a twin of it) against one, at the sweep's most streams."""
    twin = pool.make_twin(opts.model_path, conf.models_dir())

    def body(model: str) -> dict:
        return completion_body(model, prompts.make(opts.sweep_prompt_tokens)[0], opts.gen_tokens)

    return pool.measure(base, opts.model_id, twin.name, body, streams_each=max(1, max(opts.streams) // 2))


def machine() -> str:
    import mlx.core as mx

    device = str(mx.default_device())
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        gpu = ""
    cpu = f"{platform.machine()}, {__import__('os').cpu_count()} cores"
    return f"{gpu or platform.processor() or 'CPU'} ({cpu}); MLX device {device}"


def run(opts: Options, log=print) -> str:
    from mlx_lm.utils import load_tokenizer  # the tokenizer the servers use

    opts.workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(Path(opts.model_path))
    results: dict[str, SystemResult] = {}
    started = time.time()
    opts.alternated = opts.inprocess and fits_twice(opts.model_path)
    lmx_prompts = Prompts(tokenizer, opts.prompt_tokens, seed=2)
    inproc_prompts = Prompts(tokenizer, opts.prompt_tokens, seed=1)

    if opts.inprocess and not opts.alternated:
        log("mlx-lm in-process …")
        results["inprocess"] = measure_inprocess(opts, inproc_prompts)

    log("LMX …")
    served = None if opts.url else start_lmx(opts.model_id, workdir=opts.workdir, streams=max(opts.streams))
    base = opts.url or served.url
    try:
        lmx = None
        if opts.alternated:
            from benchmarks.inprocess import InProcess

            log("LMX and mlx-lm in-process, single-stream trials taking turns …")
            engine = InProcess(opts.model_path)
            try:
                lmx, inproc = SystemResult(), SystemResult()
                alternate_singles(
                    base, opts.model_id, (lmx, lmx_prompts), (inproc, inproc_prompts), engine, opts
                )
                log("mlx-lm in-process, concurrency sweep …")
                inprocess_sweep(engine, inproc_prompts, opts, inproc)
                results["inprocess"] = inproc
            finally:
                _free(engine)
            log("LMX, concurrency sweep …")
        lmx = measure_server(base, opts.model_id, lmx_prompts, opts, lmx=True, result=lmx)
        with httpx.Client(base_url=base, timeout=30) as http:
            loaded = next(m for m in http.get("/admin/models").json()["models"] if m["loaded"])
            lmx.notes.insert(0, f"backend {loaded['backend']}")
        if opts.gguf_id:
            log("LMX, GGUF copy …")
            lmx.gguf_decode_tps, lmx.gguf_native_decode_tps = measure_gguf(
                base, opts.gguf_id, opts.model_id, Prompts(tokenizer, opts.prompt_tokens, seed=3), opts
            )
        if opts.two_models:
            log("LMX, two models resident …")
            lmx.pool = measure_pool(base, opts, Prompts(tokenizer, opts.prompt_tokens, seed=5))
        results["lmx"] = lmx
    finally:
        if served:
            served.stop()
        if opts.two_models:
            pool.remove_twin(conf.models_dir() / twin_name(opts))

    if opts.peer:
        log("mlx_lm.server …")
        peer = start_peer(opts.model_path, workdir=opts.workdir)
        try:
            results["peer"] = measure_server(
                peer.url, opts.model_path, Prompts(tokenizer, opts.prompt_tokens, seed=4), opts, lmx=False
            )
        finally:
            peer.stop()

    return report.render(opts, results, machine=machine(), seconds=time.time() - started)
