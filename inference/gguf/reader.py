"""gguf-py's reader with every count, length and offset checked against the file first.

gguf-py trusts the header: a crafted count loops for hours, a truncated file yields short arrays
that fail later with an unrelated error, a zero alignment divides by zero. This subclass refuses
each of those with a message that names it before anything is allocated for it, and reads the
vocabulary's string arrays in one pass instead of one numpy view per string (seconds for 150k).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

# What a header may claim before it is called absurd: llama.cpp's largest vocabularies hold
# ~260k tokens, its tensors have at most 4 dimensions.
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20
MAX_ARRAY = 1 << 20
MAX_DIMS = 4
MAX_ELEMENTS = 1 << 50  # a tensor's; a parameter count must fit SQLite's 64-bit integers too

_ARRAY = int(GGUFValueType.ARRAY)
_STRING = int(GGUFValueType.STRING)


class GGUFError(ValueError):
    """A file LMX cannot use; `kind` says whether it is damaged or just not supported."""

    def __init__(self, message: str, *, kind: str = "corrupt"):
        super().__init__(message)
        self.kind = kind  # "corrupt" | "unsupported"


class BoundedReader(GGUFReader):
    def _get(self, offset, dtype, count=1, override_order=None):
        count = int(count)
        end = int(offset) + np.dtype(dtype).itemsize * count
        if end > len(self.data):
            raise GGUFError("the header ends before the file says it does (truncated)")
        return super()._get(offset, dtype, count, override_order)

    def _claim(self, what: str, n: int, limit: int, each: int, offset: int) -> int:
        """`n` items of at least `each` bytes from `offset`: at most `limit`, and within the file."""
        n = int(n)
        if n > limit:
            raise GGUFError(f"the header claims {n} {what} (at most {limit} are read)")
        if n * each > len(self.data) - offset:
            raise GGUFError(f"the header claims {n} {what}, more than the file holds")
        return n

    def _get_str(self, offset):
        length = self._get(offset, np.uint64)
        if int(length[0]) > len(self.data) - offset - 8:
            raise GGUFError(f"the header claims a string of {int(length[0])} bytes, more than the file holds")
        return length, self._get(offset + 8, np.uint8, length[0])

    def _build_fields(self, offs, count):
        return super()._build_fields(offs, self._claim("key/value pairs", count, MAX_KV, 12, offs))

    def _build_tensor_info(self, offs, count):
        return super()._build_tensor_info(offs, self._claim("tensors", count, MAX_TENSORS, 24, offs))

    def _get_field_parts(self, orig_offs, raw_type):
        if int(raw_type) not in GGUFValueType._value2member_map_:
            raise GGUFError(f"unknown GGUF value type {int(raw_type)}")
        if int(raw_type) != _ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        raw_itype = self._get(orig_offs, np.uint32)
        alen = self._get(orig_offs + 4, np.uint64)
        itype, start = int(raw_itype[0]), orig_offs + 12
        if itype == _ARRAY:
            raise GGUFError("an array of arrays in the header (GGUF models have none)")
        if itype == _STRING:
            n = self._claim("array items", alen[0], MAX_ARRAY, 8, start)
            end = _string_array_end(self.data, start, n)
            blob = self._get(start, np.uint8, end - start)
        elif itype in GGUFValueType._value2member_map_:
            nptype = self.gguf_scalar_to_np[GGUFValueType(itype)]
            n = self._claim("array items", alen[0], MAX_ARRAY, np.dtype(nptype).itemsize, start)
            blob = self._get(start, nptype, n)
        else:
            raise GGUFError(f"unknown GGUF value type {itype} in an array")
        # One part for the whole array (gguf-py keeps one per item): `field_value` reads it.
        types = [GGUFValueType.ARRAY, GGUFValueType(itype)]
        return 12 + int(blob.nbytes), [raw_itype, alen, blob], [2], types

    def _get_tensor_info_field(self, orig_offs):
        field = super()._get_tensor_info_field(orig_offs)
        _, _, n_dims, dims, _, _ = field.parts
        if int(n_dims[0]) > MAX_DIMS:
            raise GGUFError(
                f"tensor '{field.name}' has {int(n_dims[0])} dimensions (GGUF has at most {MAX_DIMS})"
            )
        count = 1
        for d in dims.tolist():
            count *= int(d)
        if count > MAX_ELEMENTS:
            raise GGUFError(f"tensor '{field.name}' claims {count} elements (dimensions {dims.tolist()})")
        return field

    def _build_tensors(self, start_offs, fields):
        size = len(self.data)
        for field in fields:
            _, _, _, dims, raw_dtype, offset = field.parts
            name, raw = field.name, int(raw_dtype[0])
            if raw not in GGMLQuantizationType._value2member_map_:
                raise GGUFError(
                    f"tensor '{name}' has tensor type {raw}, which llama.cpp's gguf package does not know "
                    "(a newer GGUF type, or a damaged file)",
                    kind="unsupported",
                )
            ggml_type = GGMLQuantizationType(raw)
            block, block_bytes = GGML_QUANT_SIZES[ggml_type]
            count = 1
            for d in dims.tolist():
                count *= int(d)
            if count % block or (dims.size and int(dims[0]) % block):
                raise GGUFError(
                    f"tensor '{name}' of {dims.tolist()} does not fill whole {ggml_type.name} blocks"
                )
            if int(offset[0]) % self.alignment:
                raise GGUFError(
                    f"tensor '{name}' starts at offset {int(offset[0])}, not a multiple of the file's "
                    f"alignment {self.alignment} (the tensor data is shifted)"
                )
            end = int(start_offs) + int(offset[0]) + count // block * block_bytes
            if end > size:
                raise GGUFError(
                    f"tensor '{name}' ends at byte {end}, past the end of the file ({size} bytes): "
                    "the file is truncated"
                )
        super()._build_tensors(start_offs, fields)


def _string_array_end(data: np.ndarray, offset: int, count: int) -> int:
    """Where `count` length-prefixed strings starting at `offset` end, each checked in bounds."""
    view, size, unpack = memoryview(data), len(data), struct.Struct("<Q").unpack_from
    for _ in range(count):
        if offset + 8 > size:
            raise GGUFError("the header ends inside a string array (truncated)")
        (length,) = unpack(view, offset)
        offset += 8 + length
        if offset > size:
            raise GGUFError(f"the header claims a string of {length} bytes, more than the file holds")
    return offset


def _strings(blob: np.ndarray) -> list[str]:
    view, out, offset, unpack = memoryview(blob), [], 0, struct.Struct("<Q").unpack_from
    while offset < len(blob):
        (length,) = unpack(view, offset)
        out.append(bytes(view[offset + 8 : offset + 8 + length]).decode("utf-8", "replace"))
        offset += 8 + length
    return out


def field_value(field) -> Any:
    """A metadata value as Python: a scalar, a string, or a list (arrays)."""
    if field.types and field.types[0] == GGUFValueType.ARRAY:
        blob = field.parts[field.data[0]]
        return _strings(blob) if field.types[1] == GGUFValueType.STRING else blob.tolist()
    if field.types and field.types[0] == GGUFValueType.STRING:
        return bytes(field.parts[-1]).decode("utf-8", "replace")
    return field.parts[-1].tolist()[0]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ggml_type: GGMLQuantizationType
    shape: tuple[int, ...]  # numpy order (rows last-but-one, elements in a row last)
    n_elements: int
    n_bytes: int
    data_offset: int


class GGUFFile:
    """A GGUF file's metadata and tensor table; tensor data stays on disk (memory-mapped)."""

    def __init__(self, path: Path, reader: BoundedReader):
        self.path = path
        self.reader = reader
        self.tensors = {
            t.name: TensorInfo(
                t.name,
                t.tensor_type,
                tuple(int(d) for d in reversed(t.shape.tolist())),
                int(t.n_elements),
                int(t.n_bytes),
                int(t.data_offset),
            )
            for t in reader.tensors
        }
        self._values: dict[str, Any] = {}

    def get(self, key: str, default=None):
        field = self.reader.fields.get(key)
        if field is None:
            return default
        if key not in self._values:
            self._values[key] = field_value(field)
        return self._values[key]

    def has(self, key: str) -> bool:
        return key in self.reader.fields

    @property
    def architecture(self) -> str:
        return str(self.get("general.architecture", ""))

    def raw(self, name: str) -> np.ndarray:
        """A tensor's bytes as gguf-py maps them (floats as their numpy type, blocks as uint8)."""
        for t in self.reader.tensors:
            if t.name == name:
                return t.data
        raise KeyError(name)

    def tensor_data(self) -> dict[str, np.ndarray]:
        return {t.name: t.data for t in self.reader.tensors}


def open_file(path: Path) -> GGUFFile:
    """Read a GGUF file's header through gguf-py; GGUFError names what is wrong with it."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise GGUFError(f"cannot read {path.name}: {exc.strerror}") from exc
    if magic != b"GGUF":
        raise GGUFError("not a GGUF file (it does not start with the GGUF magic bytes)")
    try:
        return GGUFFile(path, BoundedReader(path))
    except GGUFError:
        raise
    except (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, TypeError) as exc:
        raise GGUFError(_reader_message(exc)) from exc
    except (OSError, MemoryError) as exc:
        raise GGUFError(f"cannot read {path.name}: {exc}") from exc


def _reader_message(exc: Exception) -> str:
    text = str(exc).strip("'\"")
    if "version" in text:
        return f"unsupported GGUF version ({text})"
    if isinstance(exc, UnicodeDecodeError):
        return "a key or tensor name is not valid UTF-8"
    return text or type(exc).__name__
