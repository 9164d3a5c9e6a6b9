"""What the model store says about a GGUF file: read, checked and planned as a load would,
without reading a tensor, so a file that cannot load is listed with why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from inference.gguf import archs
from inference.gguf.quant import file_type_label, mlx_bits
from inference.gguf.reader import GGUFError, open_file


@dataclass
class Summary:
    architecture: str = ""
    quantization: str = ""  # the file's type, as llama.cpp names it
    parameter_count: int | None = None
    bits: float | None = None  # bits per weight in the file
    mlx_bits: list[int] = field(default_factory=list)  # widths its tensors become in MLX
    tensor_types: dict[str, int] = field(default_factory=dict)
    context_length: int | None = None
    pooling_type: int | None = None
    error: str | None = None
    unsupported: bool = False  # the file is fine; LMX cannot use it (architecture, tokenizer)


def summarize(path: Path) -> Summary:
    summary = Summary()
    try:
        f = open_file(path)
    except GGUFError as exc:
        summary.error, summary.unsupported = f"unreadable GGUF header: {exc}", exc.kind == "unsupported"
        return summary
    summary.architecture = f.architecture
    summary.quantization = file_type_label(f.get("general.file_type"))
    infos = list(f.tensors.values())
    params = sum(t.n_elements for t in infos)
    if params >= 1 << 63:
        summary.error = f"unreadable GGUF header: a parameter count of {params}"
        return summary
    summary.parameter_count = params
    summary.bits = round(sum(t.n_bytes for t in infos) * 8 / params, 2) if params else None
    summary.tensor_types = dict(Counter(t.ggml_type.name for t in infos))
    summary.pooling_type = _int(f.get(f"{f.architecture}.pooling_type"))
    summary.context_length = _int(f.get(f"{f.architecture}.context_length"))
    try:
        plan = archs.lookup(f.architecture).plan(f)
    except GGUFError as exc:
        summary.unsupported = exc.kind == "unsupported"
        summary.error = str(exc) if summary.unsupported else f"damaged GGUF file: {exc}"
        return summary
    summary.mlx_bits = sorted(
        {
            b
            for name in plan.names
            if (b := mlx_bits(f.tensors[name].ggml_type)) and len(f.tensors[name].shape) > 1
        }
    )
    return summary


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
