"""/readyz latency under N streams on one LMX server, for several run-time settings."""

import platform
from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from benchmarks import probe_sweep
from benchmarks.management.commands._bench import mlx_model, publish
from benchmarks.servers import ROOT


class Command(BaseCommand):
    help = (
        "Measure /readyz while N streams run, under settings applied to the running server: "
        "idle, switch=SECONDS, memstats=on|off, step=lmx|mlx-lm, freeze, unfreeze, gil, trace, loop (joined with +)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", help="an MLX-native model id or path (default: LMX_DEFAULT_MODEL)")
        parser.add_argument("--streams", type=int, default=32)
        parser.add_argument("--gen-tokens", type=int, default=256)
        parser.add_argument("--variants", default="idle,switch=0.005,switch=0.0002,switch=0.0002+gil")
        parser.add_argument("--out", help="append the table to this markdown file")

    def handle(self, *args, model, streams, gen_tokens, variants, out, **opts):
        import mlx.core as mx
        from mlx_lm.utils import load_tokenizer

        spec = mlx_model(
            model, why_mlx="The benchmark reads the tokenizer of an MLX-native folder; GGUF is not supported."
        )
        try:
            chosen = [s.strip() for s in variants.split(",") if s.strip()]
            for setting in chosen:
                probe_sweep.parse_setting(setting)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        rows = probe_sweep.sweep(
            spec.id,
            load_tokenizer(Path(spec.path)),
            chosen,
            streams=streams,
            gen_tokens=gen_tokens,
            workdir=ROOT / "var" / "bench-probe",
            log=lambda line: self.stderr.write(line),
        )
        title = (
            f"#### /readyz under {streams} streams × {gen_tokens} tokens, {spec.id} — {date.today()}\n\n"
            f"- {platform.machine()}, MLX {mx.__version__} ({mx.default_device()}), probe every 10 ms"
        )
        publish(self, probe_sweep.markdown(rows, title=title), out)
