"""Measure the Linux CPU paths on one model: MLX 4-bit vs float32, reference BLAS vs OpenBLAS.

Prints a Markdown table (docs/BENCHMARKS.md holds the committed one). Each cell runs in a
fresh process, because OpenBLAS must be preloaded before MLX starts.
"""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference import blas, conf
from inference.engine import cpu_blas

PROMPT = (
    "Explain in a few sentences why the sky is blue, how rainbows form, and what makes "
    "sunsets red. Keep it simple and friendly for a curious child."
)


class Command(BaseCommand):
    help = "Benchmark the CPU paths (4-bit / float32, reference BLAS / OpenBLAS) on one model."

    def add_arguments(self, parser):
        parser.add_argument("--model", default="SmolLM2-135M-Instruct", help="MLX folder in LMX_MODELS_DIR")
        parser.add_argument("--tokens", type=int, default=64)
        parser.add_argument("--one", help=argparse_hidden())

    def handle(self, *args, model, tokens, one=None, **options):
        path = conf.models_dir() / model
        if not (path / "config.json").exists():
            raise CommandError(f"{path} is not an MLX model folder")
        if one:
            self.stdout.write(json.dumps(measure(path, one, tokens)))
            return
        library = blas.openblas_library()
        rows = []
        for weights in ("q4", "f32"):
            for blas_kind in ("reference", "openblas"):
                if blas_kind == "openblas" and library is None:
                    continue
                env = dict(os.environ)
                env.pop("LD_PRELOAD", None)
                if blas_kind == "openblas":
                    env["LD_PRELOAD"] = library
                out = subprocess.run(
                    [
                        sys.executable,
                        "manage.py",
                        "lmx_bench_cpu",
                        "--model",
                        model,
                        "--tokens",
                        str(tokens),
                        "--one",
                        weights,
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                rows.append((weights, blas_kind, json.loads(out.strip().splitlines()[-1])))
        import mlx.core as mx
        import mlx_lm

        self.stdout.write(
            f"Model {model}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}, {time.strftime('%Y-%m-%d')}\n\n"
        )
        self.stdout.write(
            "| weights | BLAS | prompt tokens | prefill tok/s | decode tok/s |\n|---|---|---|---|---|\n"
        )
        for weights, blas_kind, r in rows:
            self.stdout.write(
                f"| {weights} | {blas_kind} | {r['prompt_tokens']} | {r['prefill']:.1f} | {r['decode']:.1f} |\n"
            )


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def measure(path: Path, weights: str, tokens: int) -> dict:
    from mlx_lm import load, stream_generate

    model, tokenizer = load(str(path))
    if weights == "f32":
        model = cpu_blas.dequantize(model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    for _ in range(2):  # the first run warms up
        responses = list(stream_generate(model, tokenizer, prompt, max_tokens=tokens))
    last = responses[-1]
    return {"prompt_tokens": len(prompt), "prefill": last.prompt_tps, "decode": last.generation_tps}
