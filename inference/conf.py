"""LMX settings, read at use (tests and operators may change them while the process runs)."""

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def get(name: str):
    try:
        return getattr(settings, name)
    except AttributeError as exc:  # pragma: no cover - settings.py defines them all
        raise ImproperlyConfigured(f"Setting {name} is missing") from exc


def disk_cache():
    """The prompt caches' disk tier as the engine takes it, or None when it is off."""
    from inference.wire import DiskCacheSettings

    budget = get("LMX_PROMPT_CACHE_DISK_BYTES")
    if budget <= 0:
        return None
    return DiskCacheSettings(str(get("LMX_PROMPT_CACHE_DIR")), budget, get("LMX_PROMPT_CACHE_BLOCK"))


def on_with_cuda(name: str) -> bool:
    """An auto | on | off switch whose `auto` means on where MLX runs on CUDA (where it was measured)."""
    chosen = str(get(name)).lower()
    if chosen in ("on", "off"):
        return chosen == "on"
    import mlx.core as mx

    return mx.cuda.is_available()


def models_dir() -> Path:
    return Path(get("LMX_MODELS_DIR"))


def hf_cache_dir() -> Path:
    configured = get("LMX_HF_CACHE")
    if configured:
        return Path(configured).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def model_roots() -> list[Path]:
    """Every folder a model may be loaded from; paths outside them are refused."""
    roots = [models_dir(), *get("LMX_EXTRA_MODEL_DIRS"), hf_cache_dir()]
    return [r.expanduser().resolve() for r in roots]


def validate() -> None:
    """Fail at start-up, not at the first request, on settings that cannot work."""
    warn, crit = get("LMX_MEMORY_WARNING_PCT"), get("LMX_MEMORY_CRITICAL_PCT")
    if not 0 < warn <= crit <= 100:
        raise ImproperlyConfigured(
            f"LMX_MEMORY_WARNING_PCT ({warn}) must be > 0 and <= LMX_MEMORY_CRITICAL_PCT ({crit}) <= 100"
        )
    if get("LMX_MAX_CONCURRENT") < 1 or get("LMX_MAX_QUEUE") < 0:
        raise ImproperlyConfigured("LMX_MAX_CONCURRENT must be >= 1 and LMX_MAX_QUEUE >= 0")
    switches = {
        "LMX_CPU_FAST_PATH": ("auto", "on", "off"),
        "LMX_BATCH_LAYERS": ("auto", "on", "off"),
        "LMX_PREFILL_BUCKETS": ("auto", "on", "off"),
        "LMX_SHORT_ATTENTION": ("auto", "on", "off"),
        "LMX_MODEL_THREADS": ("auto", "on", "off"),
        "LMX_MIXED_ROUNDS": ("on", "off"),
        "LMX_WARM_UP": ("background", "load"),
        "LMX_SHARDING": ("auto", "tensor", "pipeline"),
        "LMX_DISTRIBUTED_BACKEND": ("ring", "jaccl", "nccl", "mpi", "any"),
    }
    for name, allowed in switches.items():
        if str(get(name)).lower() not in allowed:
            choices = f"{', '.join(allowed[:-1])} or {allowed[-1]}"
            raise ImproperlyConfigured(f"{name} must be {choices}, not {get(name)!r}")
    chunk = str(get("LMX_PREFILL_CHUNK")).lower()
    if chunk != "auto" and not (chunk.isdigit() and 16 <= int(chunk) <= 65536):
        raise ImproperlyConfigured(
            f"LMX_PREFILL_CHUNK must be auto or a number of tokens from 16 to 65536, not {chunk!r}"
        )
    if get("LMX_MAX_MODELS") < 1 or get("LMX_MEMORY_BUDGET_GB") < 0:
        raise ImproperlyConfigured("LMX_MAX_MODELS must be >= 1 and LMX_MEMORY_BUDGET_GB >= 0")
    if get("LMX_MODEL_TTL_S") < 0 and get("LMX_MODEL_TTL_S") != -1:
        raise ImproperlyConfigured("LMX_MODEL_TTL_S must be -1 (never) or idle seconds >= 0")
    if get("LMX_REQUEST_TIMEOUT_S") <= 0:
        raise ImproperlyConfigured("LMX_REQUEST_TIMEOUT_S must be > 0")
    if get("LMX_PROMPT_CACHE_DISK_BYTES") < 0 or not 16 <= get("LMX_PROMPT_CACHE_BLOCK") <= 65536:
        raise ImproperlyConfigured(
            "LMX_PROMPT_CACHE_DISK_BYTES must be >= 0 (0: no disk tier) and LMX_PROMPT_CACHE_BLOCK "
            "a number of tokens from 16 to 65536"
        )
    keys = str(get("LMX_API_KEYS")).strip()
    if keys.startswith(("/", "~", "./")) and "," not in keys and not Path(keys).expanduser().is_file():
        raise ImproperlyConfigured(f"LMX_API_KEYS names the file {keys!r}, which does not exist")
    from inference import aliases

    aliases.all_aliases()  # a malformed LMX_MODEL_ALIASES fails here
