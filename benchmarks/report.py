"""The benchmark's table: one row per measure, ratios against both references, targets checked."""

from __future__ import annotations

import datetime
import statistics


def _f(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _ratio(a, b) -> str:
    return "–" if a is None or b in (None, 0) else f"{a / b:.2f}×"


def _order(opts, inproc) -> str:
    if inproc is None:
        return ""
    if opts.alternated:
        return ", LMX's and mlx-lm's taking turns while both held the model"
    return ", mlx-lm's first and alone (the model does not fit in memory twice)"


def render(opts, results: dict, *, machine: str, seconds: float) -> str:
    import mlx.core as mx
    from mlx_lm import __version__ as mlx_lm_version

    lmx, inproc, peer = results.get("lmx"), results.get("inprocess"), results.get("peer")

    def get(res, attr):
        return None if res is None else getattr(res, attr)

    rows = [
        ("prompt tok/s, 1 stream", "prompt_tps", 0),
        ("decode tok/s, 1 stream", "decode_tps", 1),
        ("time to first token, ms", "ttft_ms", 0),
    ]
    lines = [
        f"### {opts.model_id} — {datetime.date.today().isoformat()}",
        "",
        f"- Machine: {machine}. MLX {mx.__version__}, mlx-lm {mlx_lm_version}.",
        f"- Single stream: prompts of {opts.prompt_tokens} tokens; concurrency sweep: prompts of "
        f"{opts.sweep_prompt_tokens} tokens (aggregate = generated tokens / wall time, warm-up run first "
        f"at each size). Every request distinct, {opts.gen_tokens} generated tokens with EOS ignored, "
        f"temperature 0, streaming over HTTP for both servers (a bare-socket client); median of "
        f"{opts.trials} single-stream trials{_order(opts, inproc)}. Run took {seconds:.0f} s.",
        f"- LMX: {'; '.join(lmx.notes) if lmx and lmx.notes else '–'}. "
        f"mlx_lm.server: default flags (decode concurrency 32), EOS ignored.",
        "",
        "| measure | LMX | mlx-lm in-process | mlx_lm.server | LMX / in-process | LMX / server |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, attr, digits in rows:
        a, b, c = get(lmx, attr), get(inproc, attr), get(peer, attr)
        lines.append(
            f"| {label} | {_f(a, digits)} | {_f(b, digits)} | {_f(c, digits)} | {_ratio(a, b)} | {_ratio(a, c)} |"
        )
    for n in opts.streams:
        a = lmx.aggregate.get(n) if lmx else None
        b = inproc.aggregate.get(n) if inproc else None
        c = peer.aggregate.get(n) if peer else None
        lines.append(
            f"| aggregate tok/s, {n} stream{'s' if n > 1 else ''} | {_f(a)} | {_f(b)} | {_f(c)} | "
            f"{_ratio(a, b)} | {_ratio(a, c)} |"
        )

    def turns(res, attr):
        if res is None or getattr(res, attr) is None:
            return "–"
        first, second = getattr(res, attr)
        return f"{first:,.0f} → {second:,.0f} ms ({first / second:.1f}×)"

    for label, attr in (
        (f"{opts.conversation_tokens}-token chat, TTFT 1st → 2nd turn", "turn_ttft_ms"),
        ("the same, a second chat of that length", "seen_turn_ttft_ms"),
    ):
        lines.append(f"| {label} | {turns(lmx, attr)} | – | {turns(peer, attr)} | | |")

    def spread(res) -> str:
        if res is None or res.first_token_ms is None:
            return "–"
        return " / ".join(f"{v:,.0f}" for v in res.first_token_ms)

    most = max(opts.streams)
    lines.append(
        f"| first token under {most} streams, ms (min / median / max) | {spread(lmx)} | – | {spread(peer)} | | |"
    )
    if lmx and lmx.readyz_ms:
        lines.append(
            f"| /readyz p50 / p99 ms under {most} streams | "
            f"{lmx.readyz_ms[0]:.2f} / {lmx.readyz_ms[1]:.2f} | | | | |"
        )
    if lmx and lmx.gguf_decode_tps:
        lines.append(
            f"| GGUF copy ({opts.gguf_id}) decode tok/s | {_f(lmx.gguf_decode_tps)} | | | "
            f"{_ratio(lmx.gguf_decode_tps, _native(lmx))} of MLX-native | |"
        )
        if lmx.gguf_native_decode_tps:
            lines.append(
                f"| the MLX-native model again, right after | {_f(lmx.gguf_native_decode_tps)} | | | | |"
            )
    for n, (free, constrained) in sorted(lmx.structured.items()) if lmx else ():
        lines.append(
            f"| structured output (json_schema), {n} stream{'s' if n > 1 else ''}, tok/s "
            f"| {_f(constrained)} | | | {_ratio(constrained, free)} of unconstrained ({_f(free)}) | |"
        )
        parts = lmx.structured_parts.get(n)
        if parts:
            lines.append(
                f"| the same, median first token / gap between tokens, ms "
                f"| {parts.ttft_ms[1]:.1f} / {parts.gap_ms[1]:.2f} | | | "
                f"unconstrained {parts.ttft_ms[0]:.1f} / {parts.gap_ms[0]:.2f} | |"
            )
    if lmx and lmx.pool:
        p = lmx.pool
        lines.append(
            f"| two models resident, {p.streams_each} streams each, aggregate tok/s | {_f(p.two_models_tps)} "
            f"| | | {_ratio(p.two_models_tps, p.one_model_tps)} of {2 * p.streams_each} streams on one "
            f"({_f(p.one_model_tps)}) | |"
        )
        lines.append(
            f"| first token of a request that loads its model (JIT), ms | {_f(p.jit_first_token_ms, 0)} | | | "
            f"POST /admin/models/load {_f(p.load_ms, 0)} + first token {_f(p.loaded_first_token_ms, 0)} | |"
        )
    lines += trial_lines(opts, lmx, inproc)
    errors = {k: v.errors for k, v in results.items() if v.errors}
    if errors:
        lines.append("")
        lines.append(f"Failed requests: {errors}")
        for name, res in results.items():
            for note in res.notes[1 if name == "lmx" else 0 :][:3]:
                lines.append(f"- {name}: {str(note)[:300]}")
    lines += ["", "Targets:", ""] + [f"- {t}" for t in targets(opts, lmx, inproc, peer)]
    return "\n".join(lines) + "\n"


def trial_lines(opts, lmx, inproc) -> list[str]:
    """Each one-stream decode trial, in order, and where the trials took turns the ratio of each
    LMX trial to the in-process one beside it: how far the machine moved during the run."""

    def rates(res) -> str:
        return " ".join("–" if r is None else f"{r:.1f}" for r in res.decode_trials)

    out = []
    if lmx and lmx.decode_trials:
        out.append(f"One-stream decode trials, tok/s in order: LMX {rates(lmx)}")
        if inproc and inproc.decode_trials:
            out[-1] += f"; mlx-lm in-process {rates(inproc)}"
    pairs = (  # taking turns, both lists hold one entry per trial (None where a request failed)
        [a / b for a, b in zip(lmx.decode_trials, inproc.decode_trials, strict=True) if a and b]
        if opts.alternated and lmx and inproc
        else []
    )
    if pairs:
        out.append(
            f"Each LMX trial over the in-process trial beside it: median {statistics.median(pairs):.2f}×, "
            f"{min(pairs):.2f}-{max(pairs):.2f}×"
        )
    return ["", *out] if out else []


def targets(opts, lmx, inproc, peer) -> list[str]:
    out = []

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "**missed**")

    if lmx and inproc and lmx.decode_tps and inproc.decode_tps:
        ratio = lmx.decode_tps / inproc.decode_tps
        out.append(f"decode ≥ 0.97 × mlx-lm in-process: {ratio:.2f}× — {mark(ratio >= 0.97)}")
    if lmx and inproc and lmx.ttft_ms is not None and inproc.ttft_ms is not None:
        diff = lmx.ttft_ms - inproc.ttft_ms
        out.append(f"TTFT within 10 ms of mlx-lm in-process: {diff:+.1f} ms — {mark(diff <= 10)}")
    most = max(opts.streams)
    if lmx and peer and lmx.aggregate.get(most) and peer.aggregate.get(most):
        ratio = lmx.aggregate[most] / peer.aggregate[most]
        out.append(f"{most} streams ≥ 1.5 × mlx_lm.server: {ratio:.2f}× — {mark(ratio >= 1.5)}")
    if lmx and lmx.seen_turn_ttft_ms:
        # The second chat: its first turn is not charged for the first run of its length.
        speedup = lmx.seen_turn_ttft_ms[0] / lmx.seen_turn_ttft_ms[1]
        out.append(
            f"2nd turn ≥ 5 × faster to first token (second chat): {speedup:.1f}× — {mark(speedup >= 5)}"
        )
    if lmx and lmx.gguf_decode_tps and _native(lmx):
        ratio = lmx.gguf_decode_tps / _native(lmx)
        out.append(f"GGUF at most 10 % slower than MLX-native: {ratio:.2f}× — {mark(ratio >= 0.9)}")
    if lmx and lmx.readyz_ms:
        out.append(
            f"/readyz p99 < 2 ms under {most} streams: {lmx.readyz_ms[1]:.2f} ms — {mark(lmx.readyz_ms[1] < 2)}"
        )
    for n, (free, constrained) in sorted(lmx.structured.items()) if lmx else ():
        if free and constrained:
            ratio = constrained / free
            out.append(
                f"structured output ≥ 0.95 × unconstrained, {n} stream{'s' if n > 1 else ''}: "
                f"{ratio:.2f}× — {mark(ratio >= 0.95)}"
            )
    if lmx and lmx.pool and lmx.pool.one_model_tps:
        ratio = lmx.pool.two_models_tps / lmx.pool.one_model_tps
        out.append(
            f"two models resident ≥ 0.9 × one model at {2 * lmx.pool.streams_each} streams: "
            f"{ratio:.2f}× — {mark(ratio >= 0.9)}"
        )
    return out


def _native(lmx) -> float | None:
    """MLX-native decode tok/s to set the GGUF copy against: the trials run right after it."""
    return lmx.gguf_native_decode_tps or lmx.decode_tps
