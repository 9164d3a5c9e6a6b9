"""Build a model folder with a real architecture and random 4-bit weights (for benchmarks)."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from benchmarks.random_model import SHAPES, build, write_tokenizer
from inference import conf


class Command(BaseCommand):
    help = "Write <LMX_MODELS_DIR>/random-<shape>-4bit with random 4-bit weights of that exact shape."

    def add_arguments(self, parser):
        parser.add_argument("shape", choices=sorted(SHAPES))
        parser.add_argument("--out", help="folder to write (default: in LMX_MODELS_DIR)")
        parser.add_argument("--layers", type=int, help="fewer layers, for a quick smoke run only")
        parser.add_argument("--force", action="store_true", help="rebuild when the folder exists")

    def handle(self, *args, shape, out, layers, force, **opts):
        name = f"random-{shape}-4bit" + (f"-{layers}l" if layers else "")
        path = Path(out) if out else conf.models_dir() / name
        if (path / "config.json").exists() and not force:
            write_tokenizer(path, json.loads((path / "config.json").read_text())["vocab_size"])
            self.stdout.write(f"{path} exists (use --force to rebuild); its tokenizer rewritten")
            return
        try:
            build(shape, path, layers=layers)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        size = sum(p.stat().st_size for p in path.iterdir()) / 1e9
        self.stdout.write(f"Built {path} ({size:.1f} GB)")
