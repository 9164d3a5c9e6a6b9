"""Loading a GGUF file through LMX's layer: peak memory against the MLX model it becomes.

Writes a random-weight llama GGUF of a chosen width and type (K-quant blocks are random bytes
with sane scales: load cost does not depend on the values), loads it in a fresh process and
prints the process's peak resident memory above its level before the load, the MLX model's
parameter bytes and their ratio (#24's target: at most 1.3x), and the load time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand

SHAPES = {  # hidden, layers, ffn, heads, kv heads, vocab
    "1b": (2048, 16, 5632, 32, 8, 32000),
    "3b": (3072, 28, 8192, 24, 8, 32000),
}


def write_file(path: Path, shape: str, type_name: str) -> None:
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter
    from gguf.quants import quant_shape_to_byte_shape

    hidden, layers, ffn, heads, kv, vocab = SHAPES[shape]
    ggml_type = GGMLQuantizationType[type_name]
    block, block_bytes = GGML_QUANT_SIZES[ggml_type]
    rng = np.random.default_rng(0)
    writer = GGUFWriter(str(path), "llama")

    def matrix(name: str, rows: int, cols: int) -> None:
        blocks = rng.integers(0, 256, size=quant_shape_to_byte_shape((rows, cols), ggml_type), dtype=np.uint8)
        flat = blocks.reshape(-1, block_bytes)
        flat[:, 0:2] = np.full((flat.shape[0], 1), 0.001, dtype=np.float16).view(np.uint8)  # d
        if type_name == "Q6_K":
            flat[:, -2:] = np.full((flat.shape[0], 1), 0.001, dtype=np.float16).view(np.uint8)
        writer.add_tensor(name, blocks, raw_dtype=ggml_type)

    head_dim = hidden // heads
    matrix("token_embd.weight", vocab, hidden)
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        matrix(f"blk.{i}.attn_q.weight", hidden, hidden)
        matrix(f"blk.{i}.attn_k.weight", kv * head_dim, hidden)
        matrix(f"blk.{i}.attn_v.weight", kv * head_dim, hidden)
        matrix(f"blk.{i}.attn_output.weight", hidden, hidden)
        matrix(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_up.weight", ffn, hidden)
        matrix(f"blk.{i}.ffn_down.weight", hidden, ffn)
    writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    matrix("output.weight", vocab, hidden)
    writer.add_block_count(layers)
    writer.add_context_length(4096)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(vocab)])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    _ = block


_MEASURE = """
import json, resource, sys, time
from pathlib import Path
import psutil
from inference.engine import gguf
from inference.engine.loading import parameter_bytes
before = psutil.Process().memory_info().rss
start = time.perf_counter()
described = gguf.read_model(Path(sys.argv[1]))
model = gguf.instantiate(described.config, described.weights)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "peak": peak, "params": parameter_bytes(model), "seconds": seconds}))
"""


class Command(BaseCommand):
    help = "Peak memory and time of loading a GGUF file through LMX's GGUF layer."

    def add_arguments(self, parser):
        parser.add_argument("--shape", choices=sorted(SHAPES), default="1b")
        parser.add_argument("--types", default="Q4_0,Q4_K,Q6_K,Q8_0")

    def handle(self, *args, shape: str, types: str, **options):
        rows = []
        with tempfile.TemporaryDirectory(prefix="lmx-bench-gguf-") as tmp:
            for type_name in types.split(","):
                path = Path(tmp) / f"{shape}-{type_name}.gguf"
                write_file(path, shape, type_name)
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                        "'lmx_site.settings'); django.setup()\n" + _MEASURE,
                        str(path),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                m = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append((type_name, path.stat().st_size, m))
                path.unlink()
        self.stdout.write(f"GGUF load, llama {shape} (random weights), one fresh process per file\n")
        self.stdout.write("| type | file GB | MLX model GB | peak RSS above start GB | ratio | load s |\n")
        self.stdout.write("|---|---:|---:|---:|---:|---:|\n")
        for type_name, size, m in rows:
            grown = (m["peak"] - m["before"]) / 1e9
            model = m["params"] / 1e9
            self.stdout.write(
                f"| {type_name} | {size / 1e9:.2f} | {model:.2f} | {grown:.2f} | {grown / model:.2f} | {m['seconds']:.1f} |\n"
            )
