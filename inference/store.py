"""The model store: what models exist on disk (model roots and the Hugging Face cache).

Reads file headers only, never tensors, so a scan stays cheap for large models.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference import conf

_SAFETENSORS_BITS = {
    "F32": 32,
    "F16": 16,
    "BF16": 16,
    "U32": 32,
    "I32": 32,
    "U8": 8,
    "I8": 8,
    "F64": 64,
    "I64": 64,
    "U16": 16,
    "I16": 16,
    "BOOL": 8,
    "F8_E4M3": 8,
}
_MAX_DEPTH = 3


@dataclass
class ModelSpec:
    id: str
    path: str
    format: str  # "mlx" | "gguf"
    source: str = "local"  # "local" | "hf-cache"
    size_bytes: int = 0
    quantization: str = ""
    architecture: str = ""
    parameter_count: int | None = None
    bits: float | None = None
    kind: str = "chat"  # "chat" | "embedding" | "reranker" (model_kind)
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        return data

    def estimate_bytes(self) -> int:
        """Memory needed to load it: parameters x bits / 8 x 1.2 (falls back to size on disk)."""
        if self.parameter_count and self.bits:
            return int(self.parameter_count * self.bits / 8 * 1.2)
        return int(self.size_bytes * 1.2)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _safetensors_params(files: list[Path], quant: dict) -> int:
    default_bits = quant.get("bits")
    total = 0
    for f in files:
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > min(f.stat().st_size, 100 * 1024 * 1024):
                raise ValueError(f"{f.name}: safetensors header length {n} is impossible")
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__" or name.endswith((".scales", ".biases")):
                continue
            count = 1
            for d in info["shape"]:
                count *= d
            layer = quant.get(name.rsplit(".", 1)[0])
            bits = layer.get("bits") if isinstance(layer, dict) else default_bits
            if info["dtype"] == "U32" and bits:
                count = count * 32 // bits
            total += count
    return total


# GGUF `<arch>.pooling_type`, as llama.cpp numbers it
_GGUF_POOLING_KINDS = {1: "embedding", 2: "embedding", 3: "embedding", 4: "reranker"}


def model_kind(name: str, config: dict, folder: Path | None = None) -> str:
    """What a model is for, as its files say: a reranker (its name says so, as Qwen3-Reranker's
    does, or a classification head: a cross-encoder), an embedding model (a sentence-transformers
    layout: modules.json), else a chat model."""
    architectures = config.get("architectures") if isinstance(config.get("architectures"), list) else []
    if "rerank" in name.lower() or any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return "reranker"
    if folder is not None and (
        (folder / "modules.json").is_file() or (folder / "config_sentence_transformers.json").is_file()
    ):
        return "embedding"
    return "chat"


def describe_mlx_folder(path: Path, model_id: str, source: str = "local") -> ModelSpec | None:
    config_file = path / "config.json"
    weights = sorted(path.glob("*.safetensors"))
    if not config_file.is_file() or not weights:
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        config = {}
    quant = config.get("quantization") or config.get("quantization_config") or {}
    quant = quant if isinstance(quant, dict) else {}
    bits = quant.get("bits")
    error = None
    try:
        params = _safetensors_params(weights, quant)
    except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError) as exc:
        params, error = None, f"unreadable safetensors header: {exc}"
    spec = ModelSpec(
        id=model_id,
        path=str(path),
        format="mlx",
        source=source,
        size_bytes=_dir_size(path),
        quantization=f"{bits}bit" if bits else str(config.get("torch_dtype", "float16")),
        architecture=str(config.get("model_type", "")),
        parameter_count=params,
        bits=float(bits) if bits else 16.0,
        kind=model_kind(model_id, config, path),
    )
    if error:
        spec.extra["error"] = error
    return spec


# --- GGUF headers --------------------------------------------------------------------------
_GGUF_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
# ggml type -> (block elements, block bytes), for bits per weight
_GGML_TYPES = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 34),
    8: (32, 34),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    30: (1, 2),
}


# What a header may claim before it is called absurd: llama.cpp's largest vocabularies hold
# ~260k tokens, its tensors have at most 4 dimensions. A crafted header claiming more (or a
# string longer than the file) is refused before anything is read or allocated for it.
MAX_KV = 1 << 16
MAX_TENSORS = 1 << 20
MAX_ARRAY = 1 << 20
MAX_DIMS = 4
MAX_ELEMENTS = 1 << 50  # a tensor's; a parameter count must fit SQLite's 64-bit integers too


class _Header:
    """A GGUF header read with every length checked against the file and the limits above."""

    def __init__(self, fh, size: int):
        self.fh, self.size = fh, size

    def unpack(self, fmt: str):
        data = self.fh.read(struct.calcsize(fmt))
        if len(data) != struct.calcsize(fmt):
            raise ValueError("the header ends before the file says it does (truncated)")
        return struct.unpack(fmt, data)

    def count(self, what: str, n: int, limit: int, each: int) -> int:
        """`n` items of at least `each` bytes: at most `limit`, and within the file's rest."""
        if n > limit:
            raise ValueError(f"the header claims {n} {what} (at most {limit} are read)")
        if n * each > self.size - self.fh.tell():
            raise ValueError(f"the header claims {n} {what}, more than the file holds")
        return n

    def skip(self, n: int) -> None:
        self.count("bytes", n, self.size, 1)
        self.fh.seek(n, 1)

    def string(self) -> str:
        (n,) = self.unpack("<Q")
        self.count("bytes of string", n, self.size, 1)
        return self.fh.read(n).decode("utf-8", "replace")

    def value(self, vtype: int, *, depth: int = 0):  # depth: inside an array
        if vtype in _GGUF_SCALARS:
            return self.unpack(_GGUF_SCALARS[vtype])[0]
        if vtype == 8:
            return self.string()
        if vtype == 9 and depth:
            raise ValueError("an array of arrays in the header (GGUF models have none)")
        if vtype == 9:
            (itype,) = self.unpack("<I")
            (n,) = self.unpack("<Q")
            if itype in _GGUF_SCALARS:  # numeric arrays are skipped without decoding them
                self.skip(self.count("array items", n, MAX_ARRAY, 1) * struct.calcsize(_GGUF_SCALARS[itype]))
            else:
                for _ in range(self.count("array items", n, MAX_ARRAY, 8)):
                    self.value(itype, depth=1)
            return None
        raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_header(path: Path) -> dict:
    """Metadata scalars and a parameter/bit count from a GGUF header (no tensor data read)."""
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        header = _Header(fh, path.stat().st_size)
        _version, n_tensors, n_kv = header.unpack("<IQQ")
        meta = {}
        for _ in range(header.count("key/value pairs", n_kv, MAX_KV, 12)):
            key = header.string()
            (vtype,) = header.unpack("<I")
            value = header.value(vtype)
            if value is not None:
                meta[key] = value
        params = 0
        bits_total = 0.0
        for _ in range(header.count("tensors", n_tensors, MAX_TENSORS, 24)):
            (nlen,) = header.unpack("<Q")
            header.skip(nlen)
            (ndim,) = header.unpack("<I")
            if ndim > MAX_DIMS:
                raise ValueError(f"a tensor with {ndim} dimensions (GGUF has at most {MAX_DIMS})")
            dims = header.unpack(f"<{ndim}Q")
            (ttype,) = header.unpack("<I")
            header.skip(8)
            count = 1
            for d in dims:
                count *= d
            if count > MAX_ELEMENTS:
                raise ValueError(f"a tensor of {count} elements (dimensions {list(dims)})")
            params += count
            block, nbytes = _GGML_TYPES.get(ttype, (1, 2))
            bits_total += count * nbytes * 8 / block
    if params >= 1 << 63:
        raise ValueError(f"a parameter count of {params}")
    meta["_parameter_count"] = params
    meta["_bits"] = bits_total / params if params else None
    return meta


GGUF_FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
}


def quantization_label(file_type: int | None) -> str:
    """A GGUF file's `general.file_type` as llama.cpp names it."""
    return GGUF_FILE_TYPES.get(file_type, f"type-{file_type}") if file_type is not None else ""


_described: dict[tuple, ModelSpec] = {}  # GGUF headers already read, by (path, id, size, mtime)


def describe_gguf(path: Path, model_id: str) -> ModelSpec:
    """The model a GGUF file holds, its header read once per version of the file (a vocabulary
    of 260k strings takes a scan ~0.2 s; a crafted one up to the limits above, seconds)."""
    stat = path.stat()
    key = (str(path), model_id, stat.st_size, stat.st_mtime_ns)
    if key not in _described:
        if len(_described) > 4096:
            _described.clear()
        _described[key] = _describe_gguf(path, model_id)
    spec = _described[key]
    return dataclasses.replace(spec, extra=dict(spec.extra))


def _describe_gguf(path: Path, model_id: str) -> ModelSpec:
    spec = ModelSpec(id=model_id, path=str(path), format="gguf", size_bytes=path.stat().st_size)
    try:
        meta = read_gguf_header(path)
    except (OSError, ValueError, struct.error, UnicodeDecodeError, MemoryError) as exc:
        spec.extra["error"] = f"unreadable GGUF header: {exc}"
        return spec
    spec.architecture = str(meta.get("general.architecture", ""))
    spec.quantization = quantization_label(meta.get("general.file_type"))
    spec.parameter_count = meta["_parameter_count"]
    spec.bits = round(meta["_bits"], 2) if meta["_bits"] else None
    spec.kind = model_kind(model_id, {})
    if spec.kind == "chat":
        spec.kind = _GGUF_POOLING_KINDS.get(meta.get(f"{spec.architecture}.pooling_type"), "chat")
    return spec


# --- scanning ------------------------------------------------------------------------------
def _scan_root(root: Path) -> list[ModelSpec]:
    found: list[ModelSpec] = []
    roots = conf.model_roots()

    def allowed(entry: Path) -> bool:
        # symlinks leading out of every model root (or nowhere: a loop) are not part of the store
        try:
            real = entry.resolve()
        except (OSError, RuntimeError):
            return False
        return any(real == r or real.is_relative_to(r) for r in roots)

    def walk(folder: Path, depth: int):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and not allowed(entry):
                continue
            rel = entry.relative_to(root).as_posix()
            if entry.is_file() and entry.suffix.lower() == ".gguf":
                found.append(describe_gguf(entry, rel))
            elif entry.is_dir():
                spec = describe_mlx_folder(entry, rel)
                if spec is not None:
                    found.append(spec)
                elif depth < _MAX_DEPTH:
                    walk(entry, depth + 1)

    if root.is_dir():
        walk(root, 1)
    return found


def _scan_hf_cache(cache: Path) -> list[ModelSpec]:
    found = []
    if not cache.is_dir():
        return found
    for repo_dir in sorted(cache.glob("models--*")):
        repo_id = repo_dir.name[len("models--") :].replace("--", "/")
        ref = repo_dir / "refs" / "main"
        snapshots = repo_dir / "snapshots"
        snapshot = None
        if ref.is_file():
            snapshot = snapshots / ref.read_text().strip()
        elif snapshots.is_dir():
            candidates = sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime)
            snapshot = candidates[-1] if candidates else None
        if snapshot is None or not snapshot.is_dir():
            continue
        spec = describe_mlx_folder(snapshot, repo_id, source="hf-cache")
        if spec is not None:
            spec.size_bytes = sum(p.resolve().stat().st_size for p in snapshot.rglob("*") if p.is_file())
            found.append(spec)
    return found


def scan() -> list[ModelSpec]:
    """Every model on disk, first the model store, then extra dirs, then the HF cache."""
    specs: list[ModelSpec] = []
    seen: set[str] = set()
    roots = [conf.models_dir(), *conf.get("LMX_EXTRA_MODEL_DIRS")]
    for spec in [s for r in roots for s in _scan_root(Path(r).expanduser())] + _scan_hf_cache(
        conf.hf_cache_dir()
    ):
        if spec.id.lower() not in seen:
            seen.add(spec.id.lower())
            specs.append(spec)
    return specs
