"""Time MLX's quantized kernels against dequantize + matmul at the row counts a server sees."""

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand

from benchmarks import kernels as kernel_bench
from benchmarks import step_profile
from benchmarks.random_model import SHAPES


class Command(BaseCommand):
    help = "Per-layer timings of quantized vs dequantized matmuls for a model shape, and GIL waits."

    def add_arguments(self, parser):
        parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.1-8b")
        parser.add_argument("--rows", default=",".join(map(str, kernel_bench.ROWS)))
        parser.add_argument("--repeat", type=int, default=10)
        parser.add_argument("--no-gil", action="store_true", help="skip the GIL-wait measurement")
        parser.add_argument("--model", help="also profile a batched decoding step of this model folder")
        parser.add_argument("--batches", default="1,8,32", help="batch sizes for --model")
        parser.add_argument("--kernels", action=argparse.BooleanOptionalAction, default=True)
        parser.add_argument(
            "--masks",
            action="store_true",
            help="with --model: what a structured-output (json_schema) row costs the batch step, in parts",
        )
        parser.add_argument(
            "--two-models",
            action="store_true",
            help="with --model: two copies decoding at once, in turn on one thread and on two threads",
        )
        parser.add_argument("--two-model-rows", type=int, default=16, help="n, rows of each copy")
        parser.add_argument("--out", help="also write the tables to this file")

    def handle(
        self,
        *args,
        shape,
        rows,
        repeat,
        no_gil,
        model,
        batches,
        kernels: bool,
        masks: bool,
        two_models: bool,
        two_model_rows: int,
        out,
        **opts,
    ):
        import platform

        import mlx.core as mx

        text = f"{mx.default_device()} on {platform.machine()}, MLX {mx.__version__}\n"
        if kernels:
            text += "\n" + self._kernels(shape, tuple(int(r) for r in rows.split(",")), repeat, not no_gil)
        if model and two_models:
            from benchmarks import model_threads

            results = model_threads.measure(model, rows=two_model_rows)
            text += "\n" + model_threads.markdown(results, rows=two_model_rows, name=Path(model).name) + "\n"
        elif model and masks:
            from benchmarks import mask_cost

            subject = mask_cost.Subject(model)
            costs = mask_cost.measure(subject, batches=tuple(int(b) for b in batches.split(",")))
            text += f"\nStructured output in LMX's batch step, {Path(model).name}\n\n"
            text += mask_cost.markdown(costs) + "\n"
            streams = max(int(b) for b in batches.split(","))
            waits = mask_cost.admission(subject, batch=streams, arriving=4)
            text += "\n" + mask_cost.admission_markdown(waits, batch=streams, arriving=4) + "\n"
            text += "\n" + mask_cost.solo_markdown(mask_cost.solo(subject)) + "\n"
        elif model:
            profiles = step_profile.profile(model, batches=tuple(int(b) for b in batches.split(",")))
            text += f"\nBatched decoding step of {Path(model).name} (BatchGenerator)\n\n"
            text += step_profile.markdown(profiles) + "\n"
        self.stdout.write(text)
        if out:
            Path(out).write_text(text)

    def _kernels(self, shape: str, rows: tuple[int, ...], repeat: int, gil: bool) -> str:
        config = SHAPES[shape]
        linear = kernel_bench.linear_rows(kernel_bench.layer_shapes(config), rows=rows, repeat=repeat)
        moe = []
        if "num_experts" in config:
            moe = kernel_bench.moe_rows(
                hidden=config["hidden_size"],
                ffn=config["moe_intermediate_size"],
                experts=config["num_experts"],
                top_k=config["num_experts_per_tok"],
                rows=rows,
                repeat=repeat,
            )
        waits = kernel_bench.gil_waits(d=config["hidden_size"]) if gil else []
        return (
            f"Layers of {shape}, 4-bit weights (group 64), bfloat16 activations, x of shape (rows, 1, dims)\n\n"
            + kernel_bench.markdown(linear, moe, waits)
            + "\n"
        )
