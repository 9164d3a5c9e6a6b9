"""One function per `lmx` command: ask the server, print a table (or the JSON with --json),
return the exit status. Errors are raised as CliError and printed by __main__."""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time

from lmx_cli import render
from lmx_cli.client import CliError, Server, event_payloads


def ps(server: Server, args: argparse.Namespace) -> int:
    """The resident models."""
    data = server.get("/admin/models")
    resident = [m for m in data["models"] if m.get("loaded")]
    if args.json:
        render.dump(resident)
        return 0
    if not resident:
        print("No model is resident. Load one with: lmx load MODEL")
        return 0
    rows = [
        [
            m["id"] + (" *" if m.get("most_recent") else ""),
            m.get("format"),
            f"{m['vram_gb']:.2f} GB" if m.get("vram_gb") is not None else None,
            "inferring" if m.get("active_requests") else "idle",
            m.get("active_requests", 0),
            "pinned" if m.get("pinned") else _ttl(m),
            m.get("context_length"),
        ]
        for m in resident
    ]
    print(render.table(["MODEL", "FORMAT", "MEMORY", "STATE", "ACTIVE", "UNLOADS", "CONTEXT"], rows))
    return 0


def _ttl(m: dict) -> str:
    if m.get("ttl_left_s") is not None:
        return f"in {render.seconds(m['ttl_left_s'])} if idle"
    return "never" if m.get("ttl_s") is None else "when idle"


def ls(server: Server, args: argparse.Namespace) -> int:
    """Every model on disk."""
    models = server.get("/admin/models")["models"]
    if args.json:
        render.dump(models)
        return 0
    if not models:
        print("No models on disk. Download one with: lmx pull OWNER/NAME")
        return 0
    rows = [
        [
            m["id"],
            m.get("format"),
            render.size(m.get("size_bytes")),
            m.get("quantization") or None,
            m.get("source"),
            "resident" if m.get("loaded") else (m.get("error") and "unusable") or "",
        ]
        for m in models
    ]
    print(render.table(["MODEL", "FORMAT", "SIZE", "QUANT", "SOURCE", "STATE"], rows))
    for m in models:
        if m.get("error"):
            print(f"  {m['id']}: {m['error']}", file=sys.stderr)
    return 0


def load(server: Server, args: argparse.Namespace) -> int:
    body: dict = {"model": args.model}
    for field in ("alias", "ttl_s", "context_length", "kv_bits"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if args.pin:
        body["pin"] = True
    result = server.post("/admin/models/load", body)
    if args.json:
        render.dump(result)
        return 0
    if result.get("already_loaded"):
        print(f"{result['model']} is already resident ({result['vram_gb']:.2f} GB).")
    else:
        print(
            f"Loaded {result['model']} in {result['load_time_ms'] / 1000:.1f} s "
            f"({result['vram_gb']:.2f} GB, {result.get('backend') or result['format']})."
        )
    for gone in result.get("evicted", []):
        print(f"  unloaded {gone['model']} to make room ({gone['freed_vram_gb']:.2f} GB)")
    return 0


def unload(server: Server, args: argparse.Namespace) -> int:
    if not args.model and not args.all:
        raise CliError("name a model to unload, or --all for every resident model", exit_code=2)
    result = server.post("/admin/models/unload", None if args.all else {"model": args.model})
    if args.json:
        render.dump(result)
        return 0
    names = ", ".join(result.get("models") or []) or "nothing was resident"
    print(f"Unloaded {names} (freed {result['freed_vram_gb']:.2f} GB).")
    return 0


def pull(server: Server, args: argparse.Namespace) -> int:
    """POST /admin/models/pull, drawing its `downloading` events from /admin/events meanwhile."""
    progress: dict = {}
    listening = threading.Event()
    finished = threading.Event()

    def follow() -> None:
        try:
            for event in event_payloads(_events(server, listening)):
                if finished.is_set():
                    return
                if event.get("type") == "model_event" and event.get("action") == "downloading":
                    if event.get("model") == args.model:
                        progress.update(event)
                        if not args.json:
                            _draw(event)
        except CliError:
            listening.set()  # no progress to show; the pull itself still answers

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    listening.wait(timeout=5)
    try:
        result = server.post("/admin/models/pull", {"model": args.model})
    finally:
        finished.set()
    if args.json:
        render.dump(result)
        return 0
    if progress and sys.stdout.isatty():
        sys.stdout.write("\n")
    if result["downloaded"]:
        print(f"Downloaded {result['model']} ({render.size(result['size_bytes'])}) to {result['path']}")
    else:
        print(f"{result['model']} is already on disk ({render.size(result['size_bytes'])}): {result['path']}")
    return 0


def _events(server: Server, listening: threading.Event):
    stream = server.stream("GET", "/admin/events")
    listening.set()  # the subscription is being made; the first events are a moment away
    yield from stream


_last_draw = [0.0]


def _draw(event: dict) -> None:
    line = f"{event['model']}  {render.bar(event['bytes_done'], event['bytes_total'])}"
    if sys.stdout.isatty():
        sys.stdout.write("\r" + line)
        sys.stdout.flush()
    elif event["bytes_done"] >= event["bytes_total"] or time.monotonic() - _last_draw[0] >= 1:
        print(line, flush=True)  # a log: one line a second, and the last
        _last_draw[0] = time.monotonic()


def errors(server: Server, args: argparse.Namespace) -> int:
    params = {"limit": args.limit}
    if args.code:
        params["code"] = args.code
    listed = server.get("/admin/errors", params=params)["errors"]
    if args.json:
        render.dump(listed)
        return 0
    if not listed:
        print("No errors recorded" + (f" with code {args.code}." if args.code else "."))
        return 0
    rows = [
        [e["time"][:19].replace("T", " "), e["code"], e["severity"], e.get("endpoint"), _short(e["message"])]
        for e in listed
    ]
    print(render.table(["TIME (UTC)", "CODE", "SEVERITY", "ENDPOINT", "MESSAGE"], rows))
    return 0


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


METRIC = re.compile(r"^(lmx_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


def _metrics(server: Server) -> dict[str, float]:
    values: dict[str, float] = {}
    for name, labels, value in METRIC.findall(server.text("/metrics")):
        if not labels:
            values[name] = float(value)
    return values


def status(server: Server, args: argparse.Namespace) -> int:
    """Readiness, memory and throughput (tokens generated over one second)."""
    ready = server.get("/readyz", ok=(200, 503))
    memory = server.get("/admin/memory")
    before, t0 = _metrics(server), time.monotonic()
    time.sleep(args.sample_s)
    after, t1 = _metrics(server), time.monotonic()
    generated = after.get("lmx_generated_tokens_total", 0) - before.get("lmx_generated_tokens_total", 0)
    throughput = {
        "tokens_per_second": round(generated / (t1 - t0), 2),
        "active_requests": int(after.get("lmx_active_requests", 0)),
        "queued_requests": int(after.get("lmx_queued_requests", 0)),
    }
    if args.json:
        render.dump({"readyz": ready, "memory": memory, "throughput": throughput})
        return 0 if ready.get("ready") else 1
    why = ready.get("error", "unknown") + (f": {ready['reason']}" if ready.get("reason") else "")
    state = "ready" if ready.get("ready") else f"not ready ({why})"  # a lost rank says which
    print(f"LMX at {server.url}: {state}")
    if ready.get("models"):
        print(f"  resident:   {', '.join(ready['models'])} (most recent: {ready.get('model')})")
    print(
        f"  memory:     {memory.get('pct', 0):.1f}% used: MLX {memory.get('vram_used_gb', 0):.2f} of "
        f"{memory.get('vram_total_gb', 0):.1f} GB, engine process {memory.get('engine_rss_gb', 0):.2f} GB "
        f"(warning at {memory.get('warning_pct')}%, critical at {memory.get('critical_pct')}%)"
    )
    print(
        f"  throughput: {throughput['tokens_per_second']:.1f} tok/s, "
        f"{throughput['active_requests']} active, {throughput['queued_requests']} queued"
    )
    return 0 if ready.get("ready") else 1


def chat(server: Server, args: argparse.Namespace) -> int:
    """Read a line, stream the answer, keep the conversation; /exit or end of input stops."""
    history: list[dict] = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stdout.write(">>> ")
            sys.stdout.flush()
        line = sys.stdin.readline()
        if not line or line.strip() in ("/exit", "/quit", "/bye"):
            return 0
        if not line.strip():
            continue
        history.append({"role": "user", "content": line.rstrip("\n")})
        body = {"model": args.model, "messages": history, "stream": True, "max_tokens": args.max_tokens}
        if args.temperature is not None:
            body["temperature"] = args.temperature
        answer = []
        for data in server.stream("POST", "/v1/chat/completions", body):
            if data == "[DONE]":
                break
            chunk = next(event_payloads(iter([data])), {})
            if chunk.get("error"):
                history.pop()
                error = chunk["error"]
                raise CliError(
                    error.get("message", "the stream ended with an error"), code=error.get("code", "")
                )
            for choice in chunk.get("choices", []):
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    answer.append(piece)
                    sys.stdout.write(piece)
                    sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        history.append({"role": "assistant", "content": "".join(answer)})
