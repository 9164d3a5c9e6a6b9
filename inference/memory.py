"""Memory figures and thresholds: the snapshot, the thresholds in force, and whether the guardian
(inference.guardian) refuses new work.

Thresholds come from LMX_MEMORY_WARNING_PCT / _CRITICAL_PCT; a run-time change (POST
/admin/memory) is kept in memory-thresholds.json in LMX_DATA_DIR and survives a restart, until the
settings themselves change (an operator's edit of the configuration wins).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import psutil

from inference import conf
from inference.errors import INSUFFICIENT_MEMORY, LMXError
from inference.runtime import get_engine

log = logging.getLogger("lmx.guardian")
FILE_NAME = "memory-thresholds.json"
_override: dict | None = None  # the run-time change in force, read from its file once


def engine_rss() -> int:
    """The engine process's resident memory: what it holds outside MLX's allocator too (the
    tokenizers, Python, a prompt being tokenized; on CPU and unified memory MLX's arrays as well)."""
    pid = getattr(get_engine(), "pid", None)
    if not pid:
        return 0
    try:
        return psutil.Process(pid).memory_info().rss
    except (psutil.Error, OSError):
        return 0


def snapshot() -> dict:
    """MLX allocator figures (as the engine last read them) against the device total (RAM on CPU),
    and the engine process's resident memory against RAM."""
    mem = get_engine().memory
    system = psutil.virtual_memory()
    total = mem.total or system.total
    ranks = {"ranks_active_gb": [round(b / 1e9, 3) for b in mem.ranks]} if mem.ranks else {}
    return {
        # A distributed group: its fullest rank (the guardian steps in before any rank runs out).
        "active_gb": round(max((mem.active, *mem.ranks)) / 1e9, 3),
        **ranks,
        "peak_gb": round(mem.peak / 1e9, 3),
        "cache_gb": round(mem.cache / 1e9, 3),
        "total_gb": round(total / 1e9, 3),
        "engine_rss_gb": round(engine_rss() / 1e9, 3),
        "system_total_gb": round(system.total / 1e9, 3),
        "system_used_gb": round((system.total - system.available) / 1e9, 3),
    }


def used_pct(mem: dict) -> float:
    """Memory counted whole: the larger of MLX's share of the device and the engine process's
    share of RAM (on CPU and unified memory the two overlap, so the larger, not the sum)."""
    device = mem["active_gb"] / mem["total_gb"] if mem["total_gb"] else 0.0
    host = mem["engine_rss_gb"] / mem["system_total_gb"] if mem["system_total_gb"] else 0.0
    return round(max(device, host) * 100, 2)


def _settings() -> tuple[float, float]:
    return float(conf.get("LMX_MEMORY_WARNING_PCT")), float(conf.get("LMX_MEMORY_CRITICAL_PCT"))


def _file() -> Path:
    return Path(conf.get("DATA_DIR")) / FILE_NAME


def _read_override() -> dict:
    try:
        data = json.loads(_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def thresholds() -> tuple[float, float]:
    """(warning %, critical %) in force."""
    global _override
    if _override is None:
        _override = _read_override()
    settings = _settings()
    if _override.get("settings") != list(settings):
        return settings  # the configuration changed since the run-time change: it wins
    return float(_override["warning"]), float(_override["critical"])


def set_thresholds(*, warning: float, critical: float) -> None:
    """A run-time change, kept across restarts (see the module's docstring)."""
    global _override
    _override = {"warning": warning, "critical": critical, "settings": list(_settings())}
    try:
        _file().parent.mkdir(parents=True, exist_ok=True)
        _file().write_text(json.dumps(_override))
    except OSError as exc:
        log.warning("Memory thresholds not saved (%s); they hold until the server stops", exc)


def event(kind: str = "memory") -> dict:
    """The `memory` event of /admin/events, with the thresholds in force so a gauge colours
    itself right after a run-time change."""
    mem = snapshot()
    warning, critical = thresholds()
    return {
        "type": kind,
        "vram_used_gb": mem["active_gb"],
        "vram_total_gb": mem["total_gb"],
        "engine_rss_gb": mem["engine_rss_gb"],
        "pct": used_pct(mem),
        "warning_pct": warning,
        "critical_pct": critical,
        "prompt_cache": prompt_cache(),
    }


def prompt_cache() -> dict:
    """Prompt tokens served from cache since start (any tier) and the disk tier's size."""
    counters = get_engine().counters
    return {
        "hit_rate": round(counters.cached_tokens / counters.prompt_tokens, 4)
        if counters.prompt_tokens
        else 0.0,
        "disk_gb": round(counters.disk_cache_bytes / 1e9, 3),
        "disk_blocks": counters.disk_cache_blocks,
    }


# Why new work is refused while memory is critical (the guardian's second step); None otherwise.
_refusing: str | None = None


def refuse_work(reason: str | None) -> None:
    global _refusing
    _refusing = reason


def refusal() -> LMXError | None:
    """The error a new request gets while the guardian refuses new work."""
    if _refusing is None:
        return None
    return LMXError(_refusing, kind=INSUFFICIENT_MEMORY, retry_after=5)
