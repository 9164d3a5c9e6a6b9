"""`lmx_bench --ranks N`: one model served by N ranks of LMX (`lmx_serve --ranks N`, the ring
backend over loopback, or the backend LMX_DISTRIBUTED_BACKEND names) against LMX on one rank and
against mlx_lm.server's own distributed mode on the same N ranks (`mlx.launch -n N`).

Each system runs alone, one after the other: single-stream decode and TTFT (median of trials),
aggregate decode at each stream count, and the greedy text of one fixed prompt, which must be the
same on 1 and N ranks."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks import http_load
from benchmarks.run import Prompts, SystemResult, completion_body, machine, server_singles
from benchmarks.servers import PEER, Served, free_port, start_lmx

FIXED_PROMPT_TOKENS = 24


@dataclass
class GroupOptions:
    model_id: str
    model_path: str
    ranks: int
    streams: list[int] = field(default_factory=lambda: [8, 32])
    prompt_tokens: int = 256
    gen_tokens: int = 64
    trials: int = 3
    peer: bool = True
    backend: str = "ring"
    workdir: Path = field(default_factory=lambda: Path("var") / "bench-distributed")


def _greedy(base: str, model: str, text: str) -> str:
    body = {"model": model, "prompt": text, "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    with httpx.Client(timeout=600) as client:
        reply = client.post(f"{base}/v1/completions", json=body)
    reply.raise_for_status()
    return reply.json()["choices"][0]["text"]


def _measure(
    base: str, model: str, prompts: Prompts, fixed: str, opts: GroupOptions
) -> tuple[SystemResult, str]:
    result = SystemResult()
    server_singles(base, model, prompts, opts, result)
    for n in opts.streams:
        warm = [completion_body(model, prompts.make(16)[0], 4) for _ in range(n)]
        asyncio.run(http_load.run_streams(base, "/v1/completions", warm))
        bodies = [completion_body(model, prompts.make(32)[0], opts.gen_tokens) for _ in range(n)]
        results, wall = asyncio.run(http_load.run_streams(base, "/v1/completions", bodies))
        failed = [r for r in results if r.error]
        result.errors += len(failed)
        result.notes.extend(r.error for r in failed[:2])
        result.aggregate[n] = sum(r.tokens for r in results if not r.error) / wall
    return result, _greedy(base, model, fixed)


def _start_peer_group(opts: GroupOptions) -> Served:
    """mlx_lm.server on `opts.ranks` ranks of this machine, launched by mlx.launch."""
    script = opts.workdir / "peer_server.py"
    script.write_text(PEER)
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        "from mlx._distributed_utils.launch import main; main()",  # mlx.launch, wherever mlx is
        "-n",
        str(opts.ranks),
        "--backend",
        opts.backend,
        "--python",
        sys.executable,
        str(script),
        "--model",
        opts.model_path,
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]
    served = Served(
        f"mlx_lm.server ({opts.ranks} ranks)",
        argv,
        {**os.environ, "PYTHONUNBUFFERED": "1"},
        port,
        opts.workdir / "peer-group.log",
    )
    served.wait("/v1/models")
    return served


def run_group(opts: GroupOptions, log=print) -> str:
    from mlx_lm.utils import load_tokenizer

    opts.workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(Path(opts.model_path))
    fixed = Prompts(tokenizer, FIXED_PROMPT_TOKENS, seed=99).make()[0]
    started = time.time()
    systems = [
        (
            "LMX, 1 rank",
            lambda: start_lmx(opts.model_id, workdir=opts.workdir / "one", streams=max(opts.streams)),
        ),
        (
            f"LMX, {opts.ranks} ranks",
            lambda: start_lmx(
                opts.model_id,
                workdir=opts.workdir / "group",
                streams=max(opts.streams),
                serve_args=("--ranks", str(opts.ranks)),
                extra_env={"LMX_DISTRIBUTED_BACKEND": opts.backend},
            ),
        ),
    ]
    if opts.peer:
        systems.append((f"mlx_lm.server, {opts.ranks} ranks", lambda: _start_peer_group(opts)))
    rows: list[tuple[str, SystemResult, str]] = []
    for name, start in systems:
        log(f"{name}: starting")
        (opts.workdir / name.split(",")[0].replace(" ", "_")).mkdir(parents=True, exist_ok=True)
        served = start()
        try:
            model = opts.model_id if name.startswith("LMX") else opts.model_path
            result, text = _measure(served.url, model, Prompts(tokenizer, opts.prompt_tokens), fixed, opts)
        finally:
            served.stop()
        log(f"{name}: decode {result.decode_tps} tok/s, aggregate {result.aggregate}")
        rows.append((name, result, text))
    return _table(opts, rows, machine(), time.time() - started)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _table(opts: GroupOptions, rows, where: str, seconds: float) -> str:
    base = rows[0][1]
    head = ["system", "TTFT ms", "decode tok/s (1 stream)"] + [f"{n} streams tok/s" for n in opts.streams]
    head += ["decode vs 1 rank", "greedy text = 1 rank", "errors"]
    lines = [
        f"### {opts.model_id} over {opts.ranks} ranks ({opts.backend} backend)",
        "",
        f"{where}; prompt {opts.prompt_tokens} tokens, {opts.gen_tokens} generated, "
        f"{opts.trials} single-stream trials (median), one run of each sweep; {seconds / 60:.1f} min.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, result, text in rows:
        ratio = (
            f"{result.decode_tps / base.decode_tps:.2f}×" if result.decode_tps and base.decode_tps else "–"
        )
        cells = [name, _fmt(result.ttft_ms, 0), _fmt(result.decode_tps)]
        cells += [_fmt(result.aggregate.get(n)) for n in opts.streams]
        cells += [ratio, "yes" if text == rows[0][2] else "**no**", str(result.errors)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Greedy text of the fixed prompt on 1 rank: `{rows[0][2][:120]!r}`")
    return "\n".join(lines) + "\n"
