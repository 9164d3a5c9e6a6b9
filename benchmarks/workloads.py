"""`lmx_bench --workload agent|mixed`: LMX against mlx_lm.server on the same model, one table.

agent: S coding-agent sessions at once (each starting once the one before has its first answer),
each with its own long prefix (a system prompt the sessions share, then tool definitions and a
workspace of its own) and T turns of a few hundred tokens; both servers get the same RAM budget for prompt caches, below what the sessions need.
Reports each turn's time to first token (median, p90), the share of prompt tokens served from
cache, and, after each server is restarted, a known session's next turn against a new session's
first (cold) turn.

mixed: K streams decoding while a P-token prompt arrives. Reports the streams' steady gap
between tokens, their p99 and largest gap while the long prompt is prefilled, and the long
prompt's time to first token against the same prompt length alone.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from dataclasses import dataclass, field

from benchmarks import http_load
from benchmarks.run import Prompts, completion_body
from benchmarks.servers import Served, start_lmx, start_peer


@dataclass
class AgentOptions:
    sessions: int = 8
    prefix_tokens: int = 12000
    turns: int = 8
    turn_tokens: int = 300
    reply_tokens: int = 64
    ram_cache_bytes: int = 0  # both servers' RAM budget for prompt caches


def kv_bytes_per_token(config: dict) -> int:
    """Keys and values of one token in 16-bit floats, from a model's config."""
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    return config["num_hidden_layers"] * kv_heads * head_dim * 2 * 2


def default_ram_budget(config: dict, opts: AgentOptions) -> int:
    """A quarter of what the sessions' caches take at 16 bits: the disk tier must hold the rest."""
    tokens = opts.sessions * (opts.prefix_tokens + opts.turns * (opts.turn_tokens + opts.reply_tokens))
    return tokens * kv_bytes_per_token(config) // 4


@dataclass
class AgentResult:
    turn_ttft_ms: list[float] = field(default_factory=list)  # every turn after each session's first
    first_turn_ttft_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    after_restart_ms: float | None = None  # a known session's next turn, first request after a restart
    cold_ms: float | None = None  # a new session's first turn, same prefix length
    errors: list[str] = field(default_factory=list)


class Session:
    """One agent session: its system prompt (shared part + its own tools and workspace) and the
    conversation so far."""

    def __init__(self, shared: str, own: str, prompts: Prompts, opts: AgentOptions):
        self.messages = [{"role": "system", "content": shared + "\n\n# Tools and workspace\n" + own}]
        self.prompts, self.opts = prompts, opts

    def body(self, model: str) -> dict:
        self.messages.append({"role": "user", "content": self.prompts.make(self.opts.turn_tokens)[0]})
        return {
            "model": model,
            "messages": list(self.messages),
            "max_tokens": self.opts.reply_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
        }

    def answered(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})


def make_sessions(tokenizer, opts: AgentOptions, *, seed: int) -> list[Session]:
    """Sessions whose prefixes share their first 80 % (the agent's system prompt) and differ after."""
    prompts = Prompts(tokenizer, opts.turn_tokens, seed=seed)
    shared = prompts.make(int(opts.prefix_tokens * 0.8))[0]
    return [
        Session(shared, prompts.make(opts.prefix_tokens // 5)[0], prompts, opts) for _ in range(opts.sessions)
    ]


async def _turn(base: str, model: str, session: Session, result: AgentResult, *, first: bool) -> float | None:
    one = await http_load.stream_one(base, "/v1/chat/completions", session.body(model))
    if one.error or one.ttft_s is None:
        result.errors.append(one.error or "no token")
        return None
    session.answered(one.text)
    result.prompt_tokens += one.prompt_tokens or 0
    result.cached_tokens += one.cached_tokens or 0
    (result.first_turn_ttft_ms if first else result.turn_ttft_ms).append(one.ttft_s * 1000)
    return one.ttft_s * 1000


async def _agent_sessions(base: str, model: str, sessions: list[Session], result: AgentResult) -> None:
    # Sessions start one after another (each once the one before has its first answer), as an
    # agent's sessions do, then run at once: a later session finds the shared system prompt.
    started = [asyncio.Event() for _ in sessions]

    async def one(i: int, session: Session) -> None:
        if i:
            await started[i - 1].wait()
        for turn in range(session.opts.turns):
            await _turn(base, model, session, result, first=turn == 0)
            started[i].set()

    await asyncio.gather(*(one(i, s) for i, s in enumerate(sessions)))


def measure_agent(start, model: str, tokenizer, opts: AgentOptions, log, *, seed: int = 5) -> AgentResult:
    """`start()` starts the server (a Served) with the prompt-cache budget already set."""
    result = AgentResult()
    sessions = make_sessions(tokenizer, opts, seed=seed)
    served: Served = start()
    try:
        _warm_up(served.url, model, tokenizer)
        log(f"  {opts.sessions} sessions x {opts.turns} turns …")
        asyncio.run(_agent_sessions(served.url, model, sessions, result))
    finally:
        served.stop()
    served = start()
    try:
        log("  after a restart …")
        # A first long prompt pays for kernels at its lengths: a throwaway session takes that cost.
        _warm_up(served.url, model, tokenizer)
        one = AgentOptions(**{**opts.__dict__, "sessions": 1})
        throwaway, cold = (make_sessions(tokenizer, one, seed=seed + k)[0] for k in (1, 2))
        asyncio.run(_turn(served.url, model, throwaway, AgentResult(), first=True))
        result.after_restart_ms = asyncio.run(
            _turn(served.url, model, sessions[0], AgentResult(), first=False)
        )
        result.cold_ms = asyncio.run(_turn(served.url, model, cold, AgentResult(), first=True))
    finally:
        served.stop()
    return result


def _warm_up(base: str, model: str, tokenizer) -> None:
    prompts = Prompts(tokenizer, 32, seed=99)
    asyncio.run(
        http_load.run_streams(base, "/v1/completions", [completion_body(model, prompts.make()[0], 4)])
    )


@dataclass
class Target:
    """What a workload runs against: the model, where the servers keep their files, which
    systems run, LMX's extra settings, and where progress is told."""

    model_id: str
    model_path: str
    tokenizer: object
    workdir: object
    log: object
    lmx: bool = True
    peer: bool = True
    env: dict = field(default_factory=dict)


def _systems(t: Target, measure, opts, *, streams: int, env: dict, peer_args: tuple[str, ...]) -> dict:
    """`measure` run against LMX and against mlx_lm.server, as `t` asks."""
    results = {}
    if t.lmx:
        t.log("LMX …")
        results["LMX"] = measure(
            lambda: start_lmx(t.model_id, workdir=t.workdir, streams=streams, extra_env=env),
            t.model_id,
            t.tokenizer,
            opts,
            t.log,
        )
    if t.peer:
        t.log("mlx_lm.server …")
        results["mlx_lm.server"] = measure(
            lambda: start_peer(t.model_path, workdir=t.workdir, extra_args=peer_args),
            t.model_path,
            t.tokenizer,
            opts,
            t.log,
        )
    return results


def run_agent(t: Target, opts: AgentOptions) -> str:
    cache_dir = t.workdir / "prompt-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    env = {
        **t.env,
        "LMX_PROMPT_CACHE_BYTES": str(opts.ram_cache_bytes),
        "LMX_PROMPT_CACHE_DIR": str(cache_dir),
    }
    peer_args = (
        "--prompt-cache-bytes",
        str(opts.ram_cache_bytes),
        "--decode-concurrency",
        str(opts.sessions),
    )
    results = _systems(t, measure_agent, opts, streams=opts.sessions, env=env, peer_args=peer_args)
    return agent_table(t.model_id, opts, results)


def _pct(values: list[float], pct: float) -> float | None:
    return http_load.percentile(values, pct) if values else None


def _f(value, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def agent_table(model_id: str, opts: AgentOptions, results: dict[str, AgentResult]) -> str:
    lmx, peer = results.get("LMX"), results.get("mlx_lm.server")
    rows = [
        (
            "turn TTFT median, ms (turns 2+)",
            lambda r: statistics.median(r.turn_ttft_ms) if r.turn_ttft_ms else None,
        ),
        ("turn TTFT p90, ms (turns 2+)", lambda r: _pct(r.turn_ttft_ms, 90)),
        (
            "first turn TTFT median, ms",
            lambda r: statistics.median(r.first_turn_ttft_ms) if r.first_turn_ttft_ms else None,
        ),
        (
            "prompt tokens served from cache, %",
            lambda r: 100 * r.cached_tokens / r.prompt_tokens if r.prompt_tokens else None,
        ),
        ("after a restart: known session's next turn, ms", lambda r: r.after_restart_ms),
        ("after a restart: new session's first turn (cold), ms", lambda r: r.cold_ms),
        (
            "cold / known after restart",
            lambda r: r.cold_ms / r.after_restart_ms if r.cold_ms and r.after_restart_ms else None,
        ),
    ]
    lines = [
        f"#### agent workload — {model_id}",
        "",
        f"- {opts.sessions} sessions at once, prefixes of ~{opts.prefix_tokens} tokens (80 % shared), "
        f"{opts.turns} turns of {opts.turn_tokens} tokens, replies of {opts.reply_tokens} tokens (EOS ignored, "
        f"temperature 0, streamed); both servers' RAM prompt-cache budget {opts.ram_cache_bytes / 1e6:,.0f} MB.",
        "",
        "| measure | LMX | mlx_lm.server | LMX / server |",
        "|---|---:|---:|---:|",
    ]
    for label, get in rows:
        a = get(lmx) if lmx else None
        b = get(peer) if peer else None
        ratio = "–" if a is None or not b else f"{a / b:.2f}×"
        lines.append(
            f"| {label} | {_f(a, 1 if 'cold /' in label else 0)} | {_f(b, 1 if 'cold /' in label else 0)} | {ratio} |"
        )
    for name, r in results.items():
        if r.errors:
            lines.append(f"\n{name}: {len(r.errors)} failed turns, e.g. {r.errors[0][:200]}")
    return "\n".join(lines) + "\n"


# --- mixed ---------------------------------------------------------------------------------


@dataclass
class MixedOptions:
    streams: int = 16
    long_tokens: int = 8000
    stream_prompt_tokens: int = 32
    stream_tokens: int = 3000  # each stream's max_tokens: enough to outlast the long prompt


@dataclass
class MixedResult:
    steady_gap_ms: float | None = None
    p99_gap_ms: float | None = None  # gaps that overlap the long prompt's prefill
    max_gap_ms: float | None = None
    long_ttft_ms: float | None = None
    alone_ttft_ms: float | None = None
    errors: list[str] = field(default_factory=list)


async def _mixed(base: str, model: str, prompts: Prompts, opts: MixedOptions, result: MixedResult) -> None:
    long_alone = completion_body(model, prompts.make(opts.long_tokens)[0], 4)
    (alone,), _ = await http_load.run_streams(base, "/v1/completions", [long_alone])
    result.alone_ttft_ms = alone.ttft_s * 1000 if alone.ttft_s else None

    streams = [http_load.StreamResult(started=0.0) for _ in range(opts.streams)]
    bodies = [
        completion_body(model, prompts.make(opts.stream_prompt_tokens)[0], opts.stream_tokens)
        for _ in streams
    ]
    tasks = [
        asyncio.create_task(http_load.stream_one(base, "/v1/completions", b, r))
        for b, r in zip(bodies, streams, strict=True)
    ]
    try:
        deadline = time.monotonic() + 600
        while min(len(r.times) for r in streams) < 16:  # every stream decoding steadily
            if any(t.done() for t in tasks) or time.monotonic() > deadline:
                result.errors.append(next((r.error for r in streams if r.error), "streams did not start"))
                return
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        t0 = time.perf_counter()
        long_body = completion_body(model, prompts.make(opts.long_tokens)[0], 4)
        (long,), _ = await http_load.run_streams(base, "/v1/completions", [long_body])
        if long.first is None:
            result.errors.append(long.error or "the long prompt got no token")
            return
        t1 = long.first
        result.long_ttft_ms = (t1 - t0) * 1000
        await asyncio.sleep(0.5)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    steady, during = [], []
    for r in streams:
        for a, b in zip(r.times[4:], r.times[5:], strict=False):
            if b <= t0:
                steady.append(b - a)
            elif a < t1:
                during.append(b - a)
        last_before = max((t for t in r.times if t <= t1), default=None)
        if last_before is not None and not any(t > t1 for t in r.times):
            during.append(t1 - last_before)  # a stream that got nothing more while it waited
    result.steady_gap_ms = statistics.median(steady) * 1000 if steady else None
    result.p99_gap_ms = http_load.percentile(during, 99) * 1000 if during else None
    result.max_gap_ms = max(during) * 1000 if during else None


def measure_mixed(start, model: str, tokenizer, opts: MixedOptions, log) -> MixedResult:
    result = MixedResult()
    served: Served = start()
    try:
        _warm_up(served.url, model, tokenizer)
        log(f"  {opts.streams} streams, a {opts.long_tokens}-token prompt arriving …")
        asyncio.run(_mixed(served.url, model, Prompts(tokenizer, 32, seed=7), opts, result))
    finally:
        served.stop()
    return result


def run_mixed(t: Target, opts: MixedOptions) -> str:
    shutil.rmtree(t.workdir / "prompt-cache", ignore_errors=True)  # "alone" must not be a cache hit
    peer_args = ("--decode-concurrency", str(opts.streams + 1))
    results = _systems(t, measure_mixed, opts, streams=opts.streams + 1, env=t.env, peer_args=peer_args)
    return mixed_table(t.model_id, opts, results, t.env)


def mixed_table(model_id: str, opts: MixedOptions, results: dict[str, MixedResult], env: dict) -> str:
    lmx, peer = results.get("LMX"), results.get("mlx_lm.server")
    rows = [
        ("streams' steady gap between tokens, ms", "steady_gap_ms"),
        ("their p99 gap while the long prompt is prefilled, ms", "p99_gap_ms"),
        ("their largest gap then, ms", "max_gap_ms"),
        ("long prompt's TTFT among the streams, ms", "long_ttft_ms"),
        ("the same prompt length alone, ms", "alone_ttft_ms"),
    ]
    settings = ", ".join(f"{k}={v}" for k, v in env.items()) or "default settings"
    lines = [
        f"#### mixed workload — {model_id}",
        "",
        f"- {opts.streams} streams decoding (prompts of {opts.stream_prompt_tokens} tokens, EOS ignored) while "
        f"a {opts.long_tokens}-token prompt arrives; LMX with {settings}.",
        "",
        "| measure | LMX | mlx_lm.server | LMX / server |",
        "|---|---:|---:|---:|",
    ]
    for label, attr in rows:
        a = getattr(lmx, attr) if lmx else None
        b = getattr(peer, attr) if peer else None
        ratio = "–" if a is None or not b else f"{a / b:.2f}×"
        lines.append(f"| {label} | {_f(a)} | {_f(b)} | {ratio} |")
    for name, r in results.items():
        if r.max_gap_ms and r.steady_gap_ms:
            lines.append(
                f"\n{name}: largest gap {r.max_gap_ms / r.steady_gap_ms:.1f}× the steady gap; long TTFT "
                f"{(r.long_ttft_ms or 0) / (r.alone_ttft_ms or 1):.2f}× alone."
            )
        if r.errors:
            lines.append(f"\n{name}: {r.errors[0][:300]}")
    return "\n".join(lines) + "\n"
