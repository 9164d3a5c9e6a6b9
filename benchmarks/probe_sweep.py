"""`/readyz` latency while N streams run, on one LMX server, under several run-time settings.

Every setting runs on the same process (one load, kernels compiled once): the settings reach the
server through the benchmark hook (inference/benchmarks/server_hook.py). For each row: aggregate
tokens per second, probe percentiles, where the slowest probes fell in the run, the collections
the garbage collector made, and (setting `gil`) how often a thread of the server waited > 10 ms
for the GIL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import http_load, server_hook
from benchmarks.run import Prompts, completion_body
from benchmarks.server_hook import GIL_LONG_S as LONG_WAIT_S
from benchmarks.servers import start_lmx

COMMANDS = ("switch", "memstats", "step", "freeze", "unfreeze", "gil", "trace", "loop")
USAGE = "use switch=SECONDS, memstats=on|off, step=lmx|mlx-lm, freeze, unfreeze, gil, trace, loop, idle"


@dataclass
class Row:
    setting: str
    tokens_per_s: float
    samples: list[tuple[float, float]]  # (time.time(), seconds)
    started: float
    ended: float
    errors: int
    gc: list = field(default_factory=list)
    gil: list = field(default_factory=list)
    calls: list = field(default_factory=list)  # slow lines of the engine thread (setting `trace`)
    loop: list = field(default_factory=list)  # slow event-loop callbacks (setting `loop`)

    def pct(self, q: float) -> float:
        return http_load.percentile([s for _, s in self.samples], q) * 1000

    def slowest(self, n: int = 6) -> str:
        worst = sorted(self.samples, key=lambda s: -s[1])[:n]
        return " ".join(f"{s * 1000:.1f}@{t - self.started:.2f}s" for t, s in worst)


def parse_setting(setting: str) -> list[str]:
    """'switch=0.0002+gil' -> ['switch 0.0002', 'gil']; 'idle' -> [] (no streams)."""
    commands = []
    for part in setting.split("+"):
        name, _, value = part.partition("=")
        if name == "idle":
            continue
        if name not in COMMANDS or not server_hook.valid(name, value):
            raise ValueError(f"unknown setting {part!r}: {USAGE}")
        commands.append(f"{name} {value}".strip())
    return commands


def has(setting: str, name: str) -> bool:
    """Whether `name` is one of the +-joined parts of a row's setting."""
    return name in setting.split("+")


def sweep(
    model_id: str, tokenizer, settings: list[str], *, streams: int, gen_tokens: int, workdir: Path, log=print
) -> list[Row]:
    for setting in settings:
        parse_setting(setting)  # fail before the server starts
    workdir.mkdir(parents=True, exist_ok=True)
    control = workdir / "hook"
    control.write_text("report")
    served = start_lmx(model_id, workdir=workdir, streams=streams, extra_env={"LMX_BENCH_HOOK": str(control)})

    def command(text: str) -> None:
        control.write_text(text)
        os.kill(served.proc.pid, signal.SIGUSR2)
        time.sleep(0.2)  # the handler runs when the server's main thread next runs Python

    prompts = Prompts(tokenizer, 32, seed=5)
    rows = []
    try:
        warm = [completion_body(model_id, prompts.make()[0], 4) for _ in range(streams)]
        asyncio.run(http_load.run_streams(served.url, "/v1/completions", warm))
        for setting in settings:
            command("report")  # start the row's gc and GIL records afresh
            for text in parse_setting(setting):
                command(text)  # switch and freeze stay for the rows after; gil ends with the row
            n = 0 if has(setting, "idle") else streams
            bodies = [completion_body(model_id, prompts.make()[0], gen_tokens) for _ in range(n)]
            row = asyncio.run(_measure(served.url, setting, bodies))
            command("report")
            report = json.loads(Path(f"{control}.out").read_text())
            row.gc, row.gil, row.calls, row.loop = (
                report["gc"],
                report["gil"],
                report["calls"],
                report["loop"],
            )
            rows.append(row)
            log(f"{setting}: p99 {row.pct(99):.2f} ms, {row.tokens_per_s:.0f} tok/s")
    finally:
        served.stop()
    return rows


async def _measure(base: str, setting: str, bodies: list[dict]) -> Row:
    with http_load.ProbePoller(base, "/readyz") as poller:
        started = time.time()
        if bodies:
            results, wall = await http_load.run_streams(base, "/v1/completions", bodies)
        else:
            await asyncio.sleep(3)
            results, wall = [], 1.0
        ended = time.time()
    tokens = sum(r.tokens for r in results if not r.error)
    errors = sum(1 for r in results if r.error)
    return Row(setting, tokens / wall, poller.samples, started, ended, errors)


def markdown(rows: list[Row], *, title: str) -> str:
    lines = [
        title,
        "",
        "| setting | tok/s | probes | p50 ms | p90 | p99 | max | slowest gc ms | GIL waits > 10 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        slow_gc = max((seconds for _, _, seconds in r.gc), default=0) * 1000
        long_waits = [s for _, s, _ in r.gil if s > LONG_WAIT_S]
        gil = (
            f"{len(long_waits) / (r.ended - r.started):.1f}/s, median {statistics.median(long_waits) * 1000:.1f} ms"
            if long_waits
            else ("none" if has(r.setting, "gil") else "–")
        )
        lines.append(
            f"| {r.setting} | {r.tokens_per_s:,.0f} | {len(r.samples)} | {r.pct(50):.2f} | {r.pct(90):.2f} "
            f"| {r.pct(99):.2f} | {r.pct(100):.1f} | {slow_gc:.1f} | {gil} |"
        )
    lines += ["", "Slowest probes (ms @ seconds after the streams started):", ""]
    lines += [f"- {r.setting}: {r.slowest()}" + (f" (errors: {r.errors})" if r.errors else "") for r in rows]
    traced = [r for r in rows if has(r.setting, "trace")]
    if traced:
        lines += ["", "Engine-thread lines over 3 ms (count, total ms):", ""]
        lines += [f"- {r.setting}: {engine_lines(r)}" for r in traced]
    timed = [r for r in rows if has(r.setting, "loop")]
    if timed:
        lines += ["", "Event-loop callbacks over 3 ms (count, total ms; probes > 5 ms that overlap one):", ""]
        lines += [f"- {r.setting}: {loop_stalls(r)}" for r in timed]
    sampled = [r for r in rows if any(threads for _, _, threads in r.gil)]
    if sampled:
        lines += ["", "Where the other threads stood when a GIL wait > 10 ms ended (count):", ""]
        lines += [f"- {r.setting}: {holders(r)}" for r in sampled]
    return "\n".join(lines) + "\n"


def engine_lines(row: Row, top: int = 8) -> str:
    """The engine thread's slow lines by place. They run in the engine process, under another
    GIL than the server's waits, so no wait is matched to them."""
    return "; ".join(f"{name} ×{n}, {ms * 1000:.0f} ms" for name, n, ms in _ranked(row.calls, top)) or "none"


def holders(row: Row, top: int = 8) -> str:
    """The commonest places the other busy threads stood at the end of long GIL waits (the hook
    leaves out threads parked in a wait): the holder is among them, at the line whose C call
    held the GIL."""
    counts = Counter(where for _, waited, threads in row.gil if waited > LONG_WAIT_S for where in threads)
    return "; ".join(f"{where} ×{n}" for where, n in counts.most_common(top))


def loop_stalls(row: Row, top: int = 8) -> str:
    """What ran long on the event loop, and how many slow probes were in flight over one."""
    slow = [(sent, s) for sent, s in row.samples if s > 0.005]
    overlapped = sum(
        1 for sent, s in slow if any(start < sent + s and sent < start + took for start, took, _ in row.loop)
    )
    names = "; ".join(f"{name} ×{n}, {ms * 1000:.0f} ms" for name, n, ms in _ranked(row.loop, top)) or "none"
    return f"{names} (slow probes overlapping: {overlapped} of {len(slow)})"


def _ranked(records: list, top: int) -> list[tuple[str, int, float]]:
    """(name, count, total seconds) of timed records [start, seconds, name], most time first."""
    totals: dict[str, list] = {}
    for _, seconds, name in records:
        total = totals.setdefault(name, [0, 0.0])
        total[0] += 1
        total[1] += seconds
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])[:top]
    return [(name, n, seconds) for name, (n, seconds) in ranked]
