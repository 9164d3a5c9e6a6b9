"""A long run against a running LMX, measured minute by minute (benchmarks/soak.py)."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

import httpx
from django.core.management.base import BaseCommand, CommandError

from benchmarks import soak


class Command(BaseCommand):
    help = (
        "Drive a running LMX for --minutes with streams, cancels, WebSocket chats, embeddings, "
        "loads and unloads, SSE subscribers and malformed requests; print a row a minute."
    )

    def add_arguments(self, parser):
        parser.add_argument("--minutes", type=float, default=30)
        parser.add_argument("--url", default=os.environ.get("LMX_URL", "http://127.0.0.1:1234"))
        parser.add_argument("--model", help="the chat model (default: the one /readyz names)")
        parser.add_argument(
            "--swap-model",
            help="loaded and unloaded beside it (default: another chat model on disk; none: skip)",
        )
        parser.add_argument(
            "--baseline-minute",
            type=int,
            help="growth is measured from this minute (default 5, or 1 if shorter)",
        )
        parser.add_argument("--json", dest="json_out", help="write the rows and the verdict to this file")
        parser.add_argument("--out", help="append the table to this markdown file")

    def handle(self, *args, minutes, url, model, swap_model, baseline_minute, json_out, out, **opts):
        token = os.environ.get("LMX_ADMIN_TOKEN", "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            ready = httpx.get(url.rstrip("/") + "/readyz", timeout=10).json()
            listed = httpx.get(url.rstrip("/") + "/admin/models", headers=headers, timeout=60).json()[
                "models"
            ]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise CommandError(f"LMX at {url} does not answer /readyz and /admin/models: {exc}") from exc
        model = model or ready.get("model")
        if not model:
            raise CommandError(f"No model is resident at {url}: load one or pass --model.")
        if swap_model is None:
            others = [
                m
                for m in listed
                if m["id"] != model and not m.get("error") and m.get("kind", "chat") == "chat"
            ]
            swap_model = others[0]["id"] if others else None
        elif swap_model == "none":
            swap_model = None
        baseline = baseline_minute or (5 if minutes >= 6 else 1)

        run = soak.Soak(url, model=model, swap_model=swap_model, minutes=minutes, token=token)
        if run.server is None:
            self.stderr.write("The server's process is not visible from here: resources are not sampled.")
        self.stdout.write(
            f"Soak: {minutes:g} min against {url}, model {model}, swapping {swap_model or 'nothing'}\n"
        )
        self.stdout.write(soak.markdown_header())
        rows: list[dict] = []

        def report(index: int, minute: soak.Minute) -> None:
            rows.append(soak.minute_row(index, minute))
            self.stdout.write(soak.markdown_row(rows[-1]))
            for failure in rows[-1]["failures"]:
                self.stderr.write(f"  minute {index + 1}: {failure}")
            sys.stdout.flush()

        run.run(on_minute=report)
        verdict = soak.verdict(rows, baseline_minute=baseline)
        self.stdout.write("\n" + json.dumps(verdict))
        if json_out:
            Path(json_out).write_text(json.dumps({"rows": rows, "verdict": verdict}, indent=1))
        if out:
            title = (
                f"#### Soak: {minutes:g} min, {model} (+ {swap_model or 'no swap'}), {platform.machine()} "
                f"{os.cpu_count()} cores — {date.today()}\n\n"
            )
            body = "\n".join(soak.markdown_row(r) for r in rows)
            with open(out, "a") as f:
                f.write(f"\n{title}{soak.markdown_header()}\n{body}\n\n`{json.dumps(verdict)}`\n")
        held = verdict["5xx"] == verdict["hung"] == verdict["lost"] == verdict["unexpected"] == 0
        flat = all(
            (verdict[k] is None or verdict[k] < 5)
            for k in ("server_rss_growth_pct", "engine_rss_growth_pct", "fds_growth_pct")
        )
        if not (held and flat):
            raise CommandError("The soak's invariants did not hold: " + json.dumps(verdict))
