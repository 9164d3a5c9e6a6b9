"""`lmx COMMAND`: argument parsing and exit statuses (0 done, 1 the server refused or failed,
2 bad usage, 3 the server cannot be reached)."""

from __future__ import annotations

import argparse
import sys

from lmx_cli import commands
from lmx_cli.client import CliError, Server


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lmx", description="Manage and talk to a running LMX server.")
    top.add_argument("--url", help="the server (default: $LMX_URL or http://127.0.0.1:1234)")
    top.add_argument(
        "--token", help="a key or admin token (default: $LMX_API_KEY for /v1, $LMX_ADMIN_TOKEN for /admin)"
    )
    top.add_argument("--json", action="store_true", help="print the server's JSON, for scripts")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("ps", help="resident models: memory, state, TTL").set_defaults(run=commands.ps)
    sub.add_parser("ls", help="models on disk").set_defaults(run=commands.ls)

    load = sub.add_parser("load", help="make a model resident (an id, path or hub id)")
    load.add_argument("model")
    load.add_argument("--pin", action="store_true", help="never evicted nor expired")
    load.add_argument("--ttl", dest="ttl_s", help='idle time before it unloads: seconds or "30m"; -1 never')
    load.add_argument("--alias", help="another name for it")
    load.add_argument("--context-length", type=int, help="refuse longer prompts")
    load.add_argument("--kv-bits", type=int, choices=(4, 8), help="quantized KV cache")
    load.set_defaults(run=commands.load)

    unload = sub.add_parser("unload", help="unload a model (or --all)")
    unload.add_argument("model", nargs="?")
    unload.add_argument("--all", action="store_true", help="every resident model")
    unload.set_defaults(run=commands.unload)

    pull = sub.add_parser("pull", help="download a Hugging Face model (owner/name) with progress")
    pull.add_argument("model")
    pull.set_defaults(run=commands.pull)

    errors = sub.add_parser("errors", help="the latest recorded errors")
    errors.add_argument("--code", help="only this error code (e.g. model-not-found)")
    errors.add_argument("--limit", type=int, default=20)
    errors.set_defaults(run=commands.errors)

    status = sub.add_parser("status", help="readiness, memory and throughput")
    status.add_argument("--sample-s", type=float, default=1.0, help=argparse.SUPPRESS)
    status.set_defaults(run=commands.status)

    chat = sub.add_parser("chat", help="talk to a model, streamed (/exit or Ctrl-D ends)")
    chat.add_argument("model")
    chat.add_argument("--system", help="a system prompt")
    chat.add_argument("--max-tokens", type=int, default=512)
    chat.add_argument("--temperature", type=float)
    chat.set_defaults(run=commands.chat)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    server = Server.from_env(args.url, args.token)
    try:
        return args.run(server, args)
    except CliError as exc:
        sys.stdout.flush()
        code = f" ({exc.code})" if exc.code else ""
        print(f"lmx: {exc}{code}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
