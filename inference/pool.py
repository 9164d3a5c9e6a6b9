"""The pool of resident models, as the server decides it: how long each model stays (pin, TTL,
the last request's keep_alive) and which to unload to make room for a load (the least recently
used idle, unpinned ones, within LMX_MAX_MODELS and the memory budget).

The engine holds the models and does what this decides; nothing here imports MLX. State is per
model path, kept while the server runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from inference import aliases, conf, memory
from inference.errors import INSUFFICIENT_MEMORY, LMXError
from inference.runtime import get_engine
from inference.store import ModelSpec
from inference.wire import LoadedInfo

FOREVER = -1.0  # a TTL or keep_alive that never ends


@dataclass
class Lifetime:
    pinned: bool = False
    ttl_s: float | None = None  # set at load; None: LMX_MODEL_TTL_S
    keep_alive_s: float | None = None  # the last request's keep_alive; None: the TTL


_lifetimes: dict[str, Lifetime] = {}


def lifetime_set(*, path: str, pin: bool | None, ttl_s: float | None) -> Lifetime:
    """A load's pin and TTL (a load of a resident model may change them; None keeps them)."""
    lifetime = _lifetimes.setdefault(path, Lifetime())
    if pin is not None:
        lifetime.pinned = pin
    if ttl_s is not None:
        lifetime.ttl_s = ttl_s
    return lifetime


def lifetime_forget(*, path: str | None) -> None:
    """Forget the lifetime of the model at `path` (None: of every model)."""
    if path is None:
        _lifetimes.clear()
    else:
        _lifetimes.pop(path, None)


def lifetime_of(path: str) -> Lifetime:
    return _lifetimes.get(path) or Lifetime()


def request_started(*, path: str, keep_alive_s: float | None) -> None:
    """A request's keep_alive (Ollama's) rules the model's idle time after it; a request without
    one gives the TTL back."""
    _lifetimes.setdefault(path, Lifetime()).keep_alive_s = keep_alive_s
    get_engine().touch(path)


def ttl_s(path: str) -> float:
    """Idle seconds the model at `path` stays resident; FOREVER (-1) when it stays."""
    lifetime = lifetime_of(path)
    if lifetime.pinned:
        return FOREVER
    for value in (lifetime.keep_alive_s, lifetime.ttl_s):
        if value is not None:
            return value
    return float(conf.get("LMX_MODEL_TTL_S"))


def idle_s(path: str) -> float | None:
    """Seconds since the model's last request ended (or it was loaded); None while it works."""
    engine = get_engine()
    if engine.active_for(path):
        return None
    return time.monotonic() - engine.last_used.get(path, time.monotonic())


def ttl_left_s(path: str) -> float | None:
    ttl, idle = ttl_s(path), idle_s(path)
    if ttl == FOREVER or idle is None:
        return None
    return round(max(0.0, ttl - idle), 1)


def expired() -> list[LoadedInfo]:
    """Resident models idle past their TTL."""
    return [m for m in get_engine().models if ttl_left_s(m.spec.path) == 0.0]


def budget_bytes() -> float:
    """Memory the resident models may use: LMX_MEMORY_BUDGET_GB, or the warning threshold."""
    configured = float(conf.get("LMX_MEMORY_BUDGET_GB"))
    if configured > 0:
        return configured * 1e9
    warning, _critical = memory.thresholds()
    return memory.snapshot()["total_gb"] * 1e9 * warning / 100


def idle(*, pinned: bool, keep_newest: bool = False) -> list[LoadedInfo]:
    """Resident models serving no request, pinned or not, least recently used first;
    `keep_newest` leaves out the most recently used resident model, whatever its state."""
    engine = get_engine()
    models = sorted(engine.models, key=lambda m: engine.last_used.get(m.spec.path, 0.0))
    if keep_newest:
        models = models[:-1]
    return [
        m for m in models if lifetime_of(m.spec.path).pinned == pinned and not engine.active_for(m.spec.path)
    ]


def room_for(spec: ModelSpec) -> list[LoadedInfo]:
    """The resident models to unload before `spec` is loaded (least recently used idle, unpinned
    ones first), or insufficient-memory when unloading all of those would not be enough."""
    residents = list(get_engine().models)
    needed = spec.estimate_bytes()
    used = memory.snapshot()["active_gb"] * 1e9
    budget, most = budget_bytes(), int(conf.get("LMX_MAX_MODELS"))
    candidates = idle(pinned=False)
    evict: list[LoadedInfo] = []
    while len(residents) - len(evict) >= most or used + needed > budget:
        if not candidates:
            raise _no_room(spec, residents, needed, used, budget, most)
        victim = candidates.pop(0)
        evict.append(victim)
        used -= victim.vram_bytes
    return evict


def _no_room(spec, residents, needed, used, budget, most) -> LMXError:
    engine = get_engine()

    def state(m: LoadedInfo) -> str:
        why = (
            "pinned"
            if lifetime_of(m.spec.path).pinned
            else "busy"
            if engine.active_for(m.spec.path)
            else "idle"
        )
        return f"{m.spec.id} ({m.vram_gb:.2f} GB, {why})"

    resident = ", ".join(state(m) for m in residents) or "none"
    if len(residents) >= most:
        reason = f"{len(residents)} models are resident (LMX_MAX_MODELS={most}) and none can be evicted"
    else:
        reason = (
            f"it needs about {needed / 1e9:.2f} GB (parameters x bits / 8 x 1.2) and {used / 1e9:.2f} GB "
            f"are in use of a {budget / 1e9:.2f} GB budget"
        )
    return LMXError(
        f"Cannot load {spec.id}: {reason}. Resident: {resident}. Unload or unpin a model, "
        "or load a smaller one.",
        kind=INSUFFICIENT_MEMORY,
    )


def names(spec: ModelSpec) -> set[str]:
    """What a request's `model` may say to mean `spec` (lower case): its id, path, folder name,
    and for GGUF the id without `.gguf`."""
    found = {spec.id.lower(), spec.path.lower(), spec.path.rstrip("/").rsplit("/", 1)[-1].lower()}
    if spec.format == "gguf":
        found.add(spec.id.lower().removesuffix(".gguf"))
    return found


def resident_named(name: str) -> LoadedInfo | None:
    """The resident model `name` (an id, alias, path or folder name) means, if any."""
    wanted = aliases.resolve(name).strip().lower()
    return next((m for m in get_engine().models if wanted in names(m.spec)), None)


# Files that crashed the engine process while they loaded (path -> their mtime then): requests do
# not load them again on their own; an explicit load may, and a file changed since is new.
_crashed: dict[str, float] = {}


def _mtime(spec: ModelSpec) -> float:
    try:
        return Path(spec.path).stat().st_mtime
    except OSError:
        return 0.0


def crashed(spec: ModelSpec) -> None:
    _crashed[spec.path] = _mtime(spec)


def crash_forgotten(spec: ModelSpec) -> None:
    _crashed.pop(spec.path, None)


def crashed_before(spec: ModelSpec) -> bool:
    return spec.path in _crashed and _crashed[spec.path] == _mtime(spec)
