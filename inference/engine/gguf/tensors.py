"""GGUF tensors into MLX arrays: exact where the ggml block is an MLX group, re-quantized
otherwise (inference.gguf.quant says which), a bounded slice of rows at a time so a large file
never holds its float form whole."""

from __future__ import annotations

import mmap

import mlx.core as mx
import numpy as np
from gguf import GGML_QUANT_SIZES, quants

from inference.gguf.quant import EXACT_BITS, FLOAT_TYPES, GROUP, INTEGER_TYPES, SUB_BLOCK_BITS, Q, mlx_bits
from inference.gguf.reader import GGUFError, TensorInfo

CHUNK_ELEMENTS = 1 << 22  # floats dequantized at once (16 MB)

# Per exact type: a block is 32 unsigned integers q and f16 fields with x = q·d + m (Q4_1, Q5_1)
# or x = (q - offset)·d: MLX's scale d and bias m or -offset·d. Layouts as ggml-quants.c has them.
_OFFSETS = {Q.Q4_0: 8, Q.Q5_0: 16, Q.Q8_0: 128}
_HEAD = {Q.Q4_0: 2, Q.Q4_1: 4, Q.Q5_0: 2, Q.Q5_1: 4, Q.Q8_0: 2}  # bytes of f16 fields


def _affine(blocks: np.ndarray, ggml_type) -> tuple[np.ndarray, np.ndarray]:
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)[:, 0]
    if ggml_type in _OFFSETS:
        return d, -_OFFSETS[ggml_type] * d
    return d, blocks[:, 2:4].copy().view(np.float16).astype(np.float32)[:, 0]


def _integers(blocks: np.ndarray, ggml_type) -> np.ndarray:
    """The unsigned integers (blocks, 32) an exact type's blocks hold, read without dequantizing."""
    head = _HEAD[ggml_type]
    if ggml_type == Q.Q8_0:
        return (blocks[:, head:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
    qs = blocks[:, head + 4 :] if ggml_type in (Q.Q5_0, Q.Q5_1) else blocks[:, head:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)  # low nibbles: values 0-15, high: 16-31
    if ggml_type in (Q.Q5_0, Q.Q5_1):  # the fifth bit of value j is bit j of qh
        qh = blocks[:, head : head + 4].copy().view("<u4")[:, 0]
        q |= (((qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1) << 4).astype(np.uint8)
    return q


def pack(q: np.ndarray, bits: int) -> np.ndarray:
    """Integers (rows, n) in [0, 2^bits) as MLX packs them: a little-endian bit stream of uint32."""
    q = q.astype(np.uint8)
    if bits == 8:
        packed = q
    elif bits == 4:
        packed = q[:, 0::2] | (q[:, 1::2] << 4)
    else:
        stream = (q[:, :, None] >> np.arange(bits, dtype=np.uint8)) & 1
        packed = np.packbits(stream.reshape(q.shape[0], -1), axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u4")


def _k_sub_blocks(blocks: np.ndarray, ggml_type) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_K / Q5_K blocks as (integers (blocks, 256), scale and bias (blocks, 8)), laid out as
    gguf-py's dequantize_blocks reads them."""
    from gguf.quants import Q4_K

    n = blocks.shape[0]
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    sc, m = Q4_K.get_scale_min(blocks[:, 4:16])
    rest = blocks[:, 16:]
    if ggml_type == Q.Q5_K:
        qh, rest = rest[:, :32], rest[:, 32:]
    q = (rest.reshape(n, -1, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)) & 0x0F
    q = q.reshape(n, 8, 32)
    if ggml_type == Q.Q5_K:
        high = (qh.reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
        q = q | (high << 4)
    return q.reshape(n, 256), d * sc.astype(np.float32), -dmin * m.astype(np.float32)


def _exact(rows: np.ndarray, ggml_type, bits: int, dtype) -> tuple[mx.array, mx.array, mx.array]:
    block_bytes = GGML_QUANT_SIZES[ggml_type][1]
    blocks = rows.reshape(-1, block_bytes)
    n_rows = rows.shape[0]
    if ggml_type in SUB_BLOCK_BITS:
        q, scale, bias = _k_sub_blocks(blocks, ggml_type)
    else:
        q, (scale, bias) = _integers(blocks, ggml_type), _affine(blocks, ggml_type)
    shape = (n_rows, scale.size // n_rows)
    return (
        mx.array(pack(q.reshape(n_rows, -1), bits)),
        mx.array(scale.reshape(shape)).astype(dtype),
        mx.array(bias.reshape(shape)).astype(dtype),
    )


def convert(
    info: TensorInfo, data: np.ndarray, *, dtype, transform
) -> tuple[dict[str, mx.array], int | None]:
    """One tensor: {"weight"[, "scales", "biases"]: array} and the MLX bits (None: float).

    `data` is gguf-py's memory-mapped view; `transform(float numpy) -> numpy` adjusts float
    tensors for mlx-lm (Gemma's norms)."""
    t = info.ggml_type
    if t in INTEGER_TYPES:
        raise GGUFError(f"tensor '{info.name}' holds integers ({t.name}); no supported model has one")
    shape = info.shape
    cols = shape[-1]
    bits = mlx_bits(t)
    quantize = bits is not None and len(shape) >= 2 and cols % GROUP == 0
    rows = data.reshape(-1, data.shape[-1])
    n_rows = rows.shape[0]
    step = max(1, CHUNK_ELEMENTS // max(cols, 1))
    parts: list[tuple] = []
    for start in range(0, n_rows, step):
        chunk = np.asarray(rows[start : start + step])
        if quantize and (t in EXACT_BITS or t in SUB_BLOCK_BITS):
            parts.append(_exact(chunk, t, bits, dtype))
            continue
        values = chunk.astype(np.float32) if t in FLOAT_TYPES and t != Q.BF16 else quants.dequantize(chunk, t)
        if not quantize:  # vectors (norms, biases) stay float32 as the file has them: they are tiny
            keep = mx.float32 if len(shape) == 1 and values.dtype == np.float32 else dtype
            parts.append((mx.array(transform(values)).astype(keep),))
            continue
        parts.append(tuple(mx.quantize(mx.array(values).astype(dtype), group_size=GROUP, bits=bits)))
    arrays = [
        mx.concatenate([p[i] for p in parts]) if len(parts) > 1 else parts[0][i] for i in range(len(parts[0]))
    ]
    out_shape = (*shape[:-1],)
    result = {"weight": arrays[0].reshape(*out_shape, -1)}
    if quantize:
        result["scales"] = arrays[1].reshape(*out_shape, -1)
        result["biases"] = arrays[2].reshape(*out_shape, -1)
    mx.eval(*result.values())
    return result, bits if quantize else None


def release(mapped: np.memmap, offset: int, nbytes: int) -> None:
    """Drop a converted tensor's file pages from this process (they count as its memory);
    `mapped` is gguf-py's map of the whole file, `offset` the tensor's byte offset in it."""
    mapping = getattr(mapped, "_mmap", None)
    if mapping is None or not hasattr(mapping, "madvise"):
        return
    aligned = offset - offset % mmap.PAGESIZE
    try:
        mapping.madvise(mmap.MADV_DONTNEED, aligned, nbytes + offset - aligned)
    except (OSError, ValueError):
        pass
