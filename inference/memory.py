"""Memory policy, in one place: the snapshot, the thresholds, whether a load fits, and what the
guardian does at each threshold.

Thresholds come from LMX_MEMORY_WARNING_PCT / _CRITICAL_PCT; a run-time change (POST
/admin/memory) is kept in memory-thresholds.json in LMX_DATA_DIR and survives a restart, until the
settings themselves change (an operator's edit of the configuration wins).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

from inference import conf, signals
from inference.errors import INSUFFICIENT_MEMORY, LMXError, OomUnloaded
from inference.runtime import get_engine
from inference.store import ModelSpec

log = logging.getLogger("lmx.guardian")
FILE_NAME = "memory-thresholds.json"
_override: dict | None = None  # the run-time change in force, read from its file once


def snapshot() -> dict:
    """MLX allocator figures (as the engine last read them) against the device total (RAM on CPU)."""
    mem = get_engine().memory
    system = psutil.virtual_memory()
    total = mem.total or system.total
    return {
        "active_gb": round(mem.active / 1e9, 3),
        "peak_gb": round(mem.peak / 1e9, 3),
        "cache_gb": round(mem.cache / 1e9, 3),
        "total_gb": round(total / 1e9, 3),
        "system_used_gb": round((system.total - system.available) / 1e9, 3),
    }


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
    used, total = mem["active_gb"], mem["total_gb"]
    warning, critical = thresholds()
    return {
        "type": kind,
        "vram_used_gb": used,
        "vram_total_gb": total,
        "pct": round(used / total * 100, 2) if total else 0.0,
        "warning_pct": warning,
        "critical_pct": critical,
    }


def check_fits(spec: ModelSpec) -> None:
    """Refuse a load whose estimate would cross the critical memory threshold."""
    engine = get_engine()
    mem = snapshot()
    total = mem["total_gb"] * 1e9
    resident = engine.loaded.vram_bytes if engine.loaded else 0
    # the resident model is unloaded first, so its memory does not count against the new one
    used = max(0.0, mem["active_gb"] * 1e9 - resident)
    _warning, critical = thresholds()
    projected = (used + spec.estimate_bytes()) / total * 100
    if projected >= critical:
        raise LMXError(
            f"Loading {spec.id} needs about {spec.estimate_bytes() / 1e9:.1f} GB "
            f"(parameters x bits / 8 x 1.2), which would put memory at {projected:.0f}% "
            f"(critical threshold {critical:.0f}%). Choose a smaller model or free memory.",
            kind=INSUFFICIENT_MEMORY,
        )


class Guardian:
    """At the critical threshold it unloads the model so the process never dies of OOM (requests
    in flight end with `oom-unloaded`); at the warning threshold it warns once per crossing."""

    def __init__(self):
        self.warned = False

    async def check(self, sample: dict, publish: Callable[[dict], Awaitable[None]]) -> None:
        warning, critical = thresholds()
        pct = sample["pct"]
        engine = get_engine()
        if pct >= critical and engine.loaded is not None:
            model = engine.loaded.spec.id
            log.error("Memory critical at %.1f%% — unloading model", pct)
            await publish(
                {
                    **sample,
                    "type": "memory_critical",
                    "action": "model_unloaded",
                    "model": model,
                    "message": f"Memory at {pct:.1f}% ≥ {critical:.0f}%: {model} was unloaded.",
                }
            )
            await asyncio.wrap_future(engine.unload(reason="oom"))
            error = OomUnloaded(
                f"Memory reached {pct:.1f}% (critical {critical:.0f}%); "
                f"{model} was unloaded. Free memory and reload a model."
            )
            await signals.error_occurred.asend(
                sender=Guardian, error=error, endpoint="memory-guardian", model=model
            )
            self.warned = False
        elif pct >= warning:
            if not self.warned:
                self.warned = True
                log.warning(
                    "Memory usage at %.1f%% (%.1f/%.1f GB)",
                    pct,
                    sample["vram_used_gb"],
                    sample["vram_total_gb"],
                )
                await publish(
                    {
                        **sample,
                        "type": "memory_warning",
                        "message": f"Memory at {pct:.1f}% ≥ warning threshold {warning:.0f}%.",
                    }
                )
        else:
            self.warned = False
