"""Convert a GGUF file into an MLX-native folder that mlx-lm (and LMX) load directly."""

import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference import conf
from inference.engine import gguf
from inference.errors import LMXError


class Command(BaseCommand):
    help = "Convert a GGUF file to an MLX-native model folder (config.json, safetensors, tokenizer)."

    def add_arguments(self, parser):
        parser.add_argument("gguf", help="path of the .gguf file")
        parser.add_argument("--out", help="output folder (default: LMX_MODELS_DIR/<file stem>-mlx)")
        parser.add_argument("--force", action="store_true", help="overwrite an existing folder")

    def handle(self, *args, gguf: str, out=None, force=False, **options):
        return convert(Path(gguf), Path(out) if out else None, force=force, stdout=self.stdout)


def convert(source: Path, out: Path | None, *, force: bool, stdout=sys.stdout) -> str:
    if not source.is_file():
        raise CommandError(f"{source} does not exist")
    out = out or conf.models_dir() / f"{source.stem}-mlx"
    if (out / "config.json").exists() and not force:
        raise CommandError(f"{out} already holds a model; pass --force to overwrite it")
    started = time.perf_counter()

    width = 30
    shown = {"filled": -1}
    interactive = getattr(stdout, "isatty", lambda: False)()

    def progress(done: int, total: int) -> None:
        filled = width * done // total
        if filled == shown["filled"] or (not interactive and filled % 3 and done != total):
            return
        shown["filled"] = filled
        bar = f"Converting tensors [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        stdout.write(f"\r{bar}" if interactive else f"{bar}\n")
        if interactive and done == total:
            stdout.write("\n")
        stdout.flush()

    try:
        described = gguf.convert(source, out, progress=progress)
    except LMXError as exc:
        raise CommandError(exc.message) from exc
    stdout.write(
        f"Wrote {out} ({described.config['model_type']}, {described.parameter_count / 1e6:.0f}M parameters, "
        f"{described.quantization}) in {time.perf_counter() - started:.1f}s\n"
    )
    return ""
