"""Time the prompt-cache lookup a new request costs the engine thread: mlx-lm's against LMX's."""

import os
import platform
from datetime import date

from django.core.management.base import BaseCommand

from benchmarks import lookup
from benchmarks.management.commands._bench import publish


class Command(BaseCommand):
    help = "Engine-thread time to find a prompt's cached prefix, mlx-lm's lookup against LMX's."

    def add_arguments(self, parser):
        parser.add_argument("--entries", type=int, default=16, help="cached chats (LMX_PROMPT_CACHE_SIZE)")
        parser.add_argument("--length", type=int, default=2000, help="tokens per cached chat")
        parser.add_argument(
            "--prompt",
            type=int,
            default=256,
            help="tokens of the fresh prompt (and of the new chat after its system prompt)",
        )
        parser.add_argument("--out", help="append the table to this markdown file")

    def handle(self, *args, entries, length, prompt, out, **opts):
        import mlx.core as mx

        rows = lookup.measure(entries=entries, length=length, prompt=prompt)
        title = (
            f"#### Prompt-cache lookup — {date.today()}\n\n"
            f"- {platform.machine()}, {os.cpu_count()} cores, MLX {mx.__version__} ({mx.default_device()})"
        )
        publish(self, lookup.markdown(rows, entries=entries, length=length, prompt=prompt, title=title), out)
