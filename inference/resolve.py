"""Turn what a client names (an id, a local path, a hub id) into a model on disk.

Local paths must stay inside the configured model roots, however they are spelled:
`..`, absolute paths, symlinks pointing out, percent-encoding.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

from inference import conf, hub_progress, store
from inference.errors import InvalidRequest, ModelNotFound, StorageFull
from inference.store import ModelSpec

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}$")


def _decode(ref: str) -> str:
    decoded = ref
    for _ in range(4):  # double-encoding too: %252e%252e
        nxt = unquote(decoded)
        if nxt == decoded:
            break
        decoded = nxt
    return decoded


def _looks_like_path(ref: str) -> bool:
    return (
        ref.startswith(("/", ".", "~", "\\"))
        or "\\" in ref
        or ".." in ref.split("/")
        or ref.endswith(".gguf")
        or bool(re.match(r"^[A-Za-z]:", ref))
    )


def find(ref: str, specs: list[ModelSpec]) -> ModelSpec | None:
    """A model of the inventory by id, case-insensitively."""
    wanted = ref.strip().lower()
    for spec in specs:
        if spec.id.lower() == wanted:
            return spec
    return None


def inside_roots(candidate: Path) -> Path:
    """The real path of `candidate`, if it lies inside a model root; InvalidRequest otherwise."""
    real = candidate.resolve()
    for root in conf.model_roots():
        if real == root or real.is_relative_to(root):
            return real
    raise InvalidRequest(
        "The model path is outside the configured model roots (LMX_MODELS_DIR, "
        "LMX_EXTRA_MODEL_DIRS, the Hugging Face cache). Move the model there or name it by id."
    )


def resolve_local(ref: str, specs: list[ModelSpec]) -> ModelSpec | None:
    """An inventory id or a path inside a model root; None when `ref` is neither."""
    if "\x00" in ref:
        raise InvalidRequest("The model name contains a NUL byte.")
    found = find(ref, specs)
    if found is not None:
        inside_roots(Path(found.path))  # a symlink in the store may point anywhere
        return found
    decoded = _decode(ref)
    if "\x00" in decoded:
        raise InvalidRequest("The model name contains a NUL byte.")
    if not _looks_like_path(decoded) and decoded == ref:
        return None
    try:
        return _on_disk(ref, decoded, specs)
    except (OSError, RuntimeError, KeyError) as exc:  # a name too long, ~nosuchuser, a symlink loop
        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ModelNotFound(f"No model at '{ref[:200]}' ({why}). Check the model path.") from exc


def _on_disk(ref: str, decoded: str, specs: list[ModelSpec]) -> ModelSpec:
    raw = Path(decoded).expanduser()
    candidate = raw if raw.is_absolute() else conf.models_dir() / raw
    real = inside_roots(candidate)
    for spec in specs:
        if Path(spec.path).resolve() == real:
            return spec
    if real.is_file() and real.suffix.lower() == ".gguf":
        return store.describe_gguf(real, real.name)
    if real.is_dir():
        spec = store.describe_mlx_folder(real, real.name)
        if spec is not None:
            return spec
    raise ModelNotFound(f"No model at '{ref}'. Check the model path or download the model.")


def resolve(ref: str, specs: list[ModelSpec], *, allow_download: bool) -> ModelSpec:
    spec = resolve_local(ref, specs)
    if spec is not None:
        return spec
    if HUB_ID.match(ref) and allow_download:
        return download(ref)
    raise ModelNotFound(
        f"Model '{ref}' is not in the model store. Check GET /admin/models, the model path, "
        "or download the model (a Hugging Face id such as mlx-community/<name>)."
    )


_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]


def download(repo_id: str) -> ModelSpec:
    """Fetch an MLX repo into the Hugging Face cache, after checking it fits on disk."""
    import fnmatch

    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    cache = conf.hf_cache_dir()
    api = HfApi()
    try:
        info = api.model_info(repo_id, files_metadata=True)
    except RepositoryNotFoundError as exc:
        raise ModelNotFound(f"'{repo_id}' is not a model on the Hugging Face hub.") from exc
    except Exception as exc:
        raise ModelNotFound(
            f"'{repo_id}' is not on disk, and the Hugging Face hub cannot be reached "
            f"({type(exc).__name__}). Check the network, or download the model and load it by path."
        ) from exc
    needed = sum(
        (s.size or 0)
        for s in (info.siblings or [])
        if any(fnmatch.fnmatch(s.rfilename, p) for p in _HUB_PATTERNS)
    )
    cache.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if needed * 1.05 > free:
        raise StorageFull(
            f"'{repo_id}' needs {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB is free in "
            f"the model cache. Free disk space or remove cached models."
        )
    try:
        with hub_progress.reporting(repo_id=repo_id, cache=cache, bytes_total=needed):
            path = snapshot_download(repo_id, cache_dir=str(cache), allow_patterns=_HUB_PATTERNS)
    except OSError as exc:
        if exc.errno == 28:
            raise StorageFull("The disk filled up during the download. Free disk space.") from exc
        raise ModelNotFound(f"Downloading '{repo_id}' failed: {exc}") from exc
    except Exception as exc:
        raise ModelNotFound(f"Downloading '{repo_id}' failed ({type(exc).__name__}).") from exc
    spec = store.describe_mlx_folder(Path(path), repo_id, source="hf-cache")
    if spec is None:
        raise ModelNotFound(f"'{repo_id}' is not an MLX model (no config.json and safetensors).")
    return spec
