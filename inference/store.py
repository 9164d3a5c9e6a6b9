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


# --- GGUF files (read by llama.cpp's gguf package: inference.gguf) ---------------------------
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
    from inference.gguf.inspect import summarize

    spec = ModelSpec(id=model_id, path=str(path), format="gguf", size_bytes=path.stat().st_size)
    summary = summarize(path)
    spec.architecture = summary.architecture
    spec.quantization = summary.quantization
    spec.parameter_count = summary.parameter_count
    spec.bits = summary.bits
    spec.extra["mlx_bits"] = summary.mlx_bits
    spec.extra["tensor_types"] = summary.tensor_types
    if summary.error:
        spec.extra["error"] = summary.error
        spec.extra["unsupported"] = summary.unsupported
    spec.kind = model_kind(model_id, {})
    if spec.kind == "chat":
        spec.kind = _GGUF_POOLING_KINDS.get(summary.pooling_type, "chat")
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
