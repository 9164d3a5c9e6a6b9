"""`lmx_bench --workload cold`: start-to-ready on a machine that has never run the model, LMX
against mlx_lm.server (#25 "load").

Each server starts with empty kernel caches of its own (MLX's compiled kernels,
MLX_PTX_CACHE_DIR, and the CUDA driver's, CUDA_CACHE_PATH), as on a fresh machine. Measured from
the server's start: when it says it is ready (LMX's /readyz; mlx_lm.server has no readiness
probe), and when a first request of P prompt tokens gets its first token, sent as soon as the
server answers HTTP. Then that request's time to first token once more with a new prompt of the
same length (what later users see). Target: LMX's start-to-ready <= 1.5 times mlx_lm.server's
start-to-first-answer.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import http_load
from benchmarks.run import Prompts, completion_body
from benchmarks.servers import Served, launch_lmx, launch_peer, wait_ok


@dataclass
class ColdOptions:
    prompt_tokens: int = 2000
    gen_tokens: int = 8
    lmx_modes: tuple[str, ...] = ("background", "load")  # LMX_WARM_UP values to run


@dataclass
class ColdResult:
    ready_s: float | None = None  # start to the readiness probe's 200 (LMX)
    first_answer_s: float | None = None  # start to the first token of the first request
    first_ttft_ms: float | None = None  # that request's own time to first token
    later_ttft_ms: float | None = None  # a second request of the same length
    load_log: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def fresh_kernel_caches(root: Path) -> dict:
    """Environment for a server whose kernels were never compiled on this machine."""
    ptx, driver = (Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root)) for name in ("ptx", "cuda"))
    return {"MLX_PTX_CACHE_DIR": str(ptx), "CUDA_CACHE_PATH": str(driver)}


def measure(served: Served, probe: str, model: str, tokenizer, opts: ColdOptions) -> ColdResult:
    result, started = ColdResult(), served.started
    try:
        wait_ok(served.url + probe, timeout=1800, alive=lambda: served.proc.poll() is None, interval=0.05)
        result.ready_s = time.perf_counter() - started
        prompts = Prompts(tokenizer, opts.prompt_tokens, seed=11)
        for attr in ("first_ttft_ms", "later_ttft_ms"):
            body = completion_body(model, prompts.make()[0], opts.gen_tokens)
            one = asyncio.run(http_load.stream_one(served.url, "/v1/completions", body))
            if one.error or one.first is None:
                result.errors.append(one.error or "no token")
                break
            setattr(result, attr, one.ttft_s * 1000)
            if attr == "first_ttft_ms":
                result.first_answer_s = one.first - started
        if probe == "/readyz":  # LMX: what the background warm-up cost, once done (its log says)
            served.wait_warm(timeout=150)
    except Exception as exc:  # noqa: BLE001 - the table says which server failed and why
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        served.stop()
    result.load_log = [
        line for line in served.log.read_text().splitlines() if "arm-up" in line or "loaded" in line
    ]
    return result


def run_cold(t, opts: ColdOptions) -> str:
    """`t`: a workloads.Target. LMX under each LMX_WARM_UP (the default, `background`, and `load`,
    every prefill length before ready), then the peer, each with fresh kernel caches."""
    results: dict[str, ColdResult] = {}
    caches = Path(tempfile.mkdtemp(prefix="lmx-cold-", dir=t.workdir))
    try:
        if t.lmx:
            for mode in opts.lmx_modes:
                t.log(f"LMX, LMX_WARM_UP={mode}, fresh kernel caches …")
                env = {**t.env, **fresh_kernel_caches(caches), "LMX_WARM_UP": mode}
                served = launch_lmx(t.model_id, workdir=t.workdir, streams=4, extra_env=env)
                results[f"LMX ({mode})"] = measure(served, "/readyz", t.model_id, t.tokenizer, opts)
        if t.peer:
            t.log("mlx_lm.server, fresh kernel caches …")
            served = launch_peer(t.model_path, workdir=t.workdir, env=fresh_kernel_caches(caches))
            results["mlx_lm.server"] = measure(served, "/v1/models", t.model_path, t.tokenizer, opts)
    finally:
        shutil.rmtree(caches, ignore_errors=True)  # the kernels each server compiled
    return table(t.model_id, opts, results)


def _f(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def table(model_id: str, opts: ColdOptions, results: dict[str, ColdResult]) -> str:
    names = list(results)
    lines = [
        f"#### cold start — {model_id}",
        "",
        f"- Each server started with empty kernel caches; a first request of {opts.prompt_tokens} prompt "
        f"tokens ({opts.gen_tokens} generated) sent as soon as it answers HTTP, then a second one.",
        "",
        "| measure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| start to ready (readiness probe), s | "
        + " | ".join(_f(r.ready_s) if "LMX" in n else "–" for n, r in results.items())
        + " |",
        "| start to the first request's first token, s | "
        + " | ".join(_f(r.first_answer_s) for r in results.values())
        + " |",
        "| first request's TTFT, ms | " + " | ".join(_f(r.first_ttft_ms, 0) for r in results.values()) + " |",
        "| second request's TTFT, ms | "
        + " | ".join(_f(r.later_ttft_ms, 0) for r in results.values())
        + " |",
    ]
    peer = results.get("mlx_lm.server")
    for name, r in results.items():
        if "LMX" in name and peer and peer.first_answer_s and r.ready_s:
            lines.append(
                f"\n{name}: start-to-ready {r.ready_s / peer.first_answer_s:.2f}× mlx_lm.server's "
                f"start-to-first-answer (target ≤ 1.5×)."
            )
    for name, r in results.items():
        if r.errors:
            lines.append(f"\n{name}: {r.errors[0][:300]}")
        if r.load_log:
            lines.append(f"\n{name} log:\n```\n" + "\n".join(r.load_log[-30:]) + "\n```")
    return "\n".join(lines) + "\n"
