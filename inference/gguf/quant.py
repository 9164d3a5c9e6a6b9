"""How each GGUF tensor type lands in MLX: the bit width of its MLX quantization, or float.

Types whose blocks are an affine map of 32 integers (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) keep their
exact values as MLX quantized weights of group 32; Q4_K and Q5_K keep their integers, with each
32-value sub-block's scale and bias rounded to float16. Every other quantized type is dequantized by
gguf-py and re-quantized to the MLX width of its whole bits per weight, at least 4 (MLX's 2- and
3-bit affine groups lose more than a K-quant's own rounding): Q4_K/IQ4 -> 4, Q5_K -> 5,
Q6_K -> 6, Q8_K -> 8. Group 32 matches the ggml block (docs/GGUF.md has the measurement).
"""

from __future__ import annotations

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

Q = GGMLQuantizationType
FLOAT_TYPES = frozenset({Q.F32, Q.F16, Q.BF16, Q.F64})
INTEGER_TYPES = frozenset({Q.I8, Q.I16, Q.I32, Q.I64})
EXACT_BITS = {Q.Q4_0: 4, Q.Q4_1: 4, Q.Q5_0: 5, Q.Q5_1: 5, Q.Q8_0: 8}
# K-quants whose 256-value blocks are eight affine sub-blocks of 32 (x = q·d·sc - dmin·m): their
# integers land as they are; only the sub-block's scale and bias are rounded to float16.
SUB_BLOCK_BITS = {Q.Q4_K: 4, Q.Q5_K: 5}
MLX_WIDTHS = (4, 5, 6, 8)
GROUP = 32


def bits_per_weight(ggml_type: Q) -> float:
    block, nbytes = GGML_QUANT_SIZES[ggml_type]
    return nbytes * 8 / block


def mlx_bits(ggml_type: Q) -> int | None:
    """The MLX bit width a tensor of this type becomes; None: it stays float."""
    if ggml_type in FLOAT_TYPES or ggml_type in INTEGER_TYPES:
        return None
    if ggml_type in EXACT_BITS or ggml_type in SUB_BLOCK_BITS:
        return EXACT_BITS.get(ggml_type) or SUB_BLOCK_BITS[ggml_type]
    whole = int(bits_per_weight(ggml_type))
    return max(w for w in MLX_WIDTHS if w <= max(whole, MLX_WIDTHS[0]))


def file_type_label(file_type) -> str:
    """`general.file_type` as llama.cpp names it (Q4_K_M, ...)."""
    if file_type is None:
        return ""
    try:
        return LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (ValueError, TypeError):
        return f"type-{file_type}"
