"""The model pool's rows: two models resident at once against one (aggregate tok/s, the same
number of streams), and the time a JIT load adds to a request's first token against loading
the model first with POST /admin/models/load.

The second model is a twin of the first (its files linked under another name in the model
store), so both halves do the same work and the ratio measures the pool, not two models' speeds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks import http_load

TWIN_SUFFIX = "-twin"


@dataclass
class PoolResult:
    streams_each: int
    one_model_tps: float  # 2 x streams_each streams on one model
    two_models_tps: float  # streams_each streams on each of two models
    load_ms: float  # POST /admin/models/load of the twin
    loaded_first_token_ms: float  # a request right after that load
    jit_first_token_ms: float  # a request that loads the twin itself


def make_twin(model_path: str, store: Path) -> Path:
    """The model's files under `<name>-twin` in the store: hard links (symbolic ones across file
    systems), no copy."""
    source = Path(model_path)
    twin = (
        store
        / f"{source.stem if source.is_file() else source.name}{TWIN_SUFFIX}{source.suffix if source.is_file() else ''}"
    )
    remove_twin(twin)
    if source.is_file():
        _link(source, twin)
        return twin
    twin.mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file():
            _link(f, twin / f.name)
    return twin


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        os.symlink(src.resolve(), dst)


def remove_twin(twin: Path) -> None:
    if twin.is_dir():
        shutil.rmtree(twin)
    elif twin.exists() or twin.is_symlink():
        twin.unlink()


def measure(
    base: str, model_id: str, twin_id: str, make_body, *, streams_each: int, trials: int = 2
) -> PoolResult:
    """`make_body(model)`: a streaming completion body with a fresh prompt."""
    with httpx.Client(base_url=base, timeout=None) as http:
        http.post("/admin/models/unload", json={"model": twin_id})  # 404 when not resident: fine
        (jit,), _ = _streams(base, [make_body(twin_id)])  # JIT: the request loads the twin
        http.post("/admin/models/unload", json={"model": twin_id}).raise_for_status()
        started = time.perf_counter()
        http.post("/admin/models/load", json={"model": twin_id}).raise_for_status()
        load_ms = (time.perf_counter() - started) * 1000
        (after,), _ = _streams(base, [make_body(twin_id)])
    _streams(base, [make_body(m) for m in (model_id, twin_id) for _ in range(streams_each)])  # warm-up
    one, two = [], []
    for _ in range(trials):  # taking turns: the machine's speed drifts
        results, wall = _streams(base, [make_body(model_id) for _ in range(2 * streams_each)])
        one.append(sum(r.tokens for r in results if not r.error) / wall)
        results, wall = _streams(
            base, [make_body(m) for m in (model_id, twin_id) for _ in range(streams_each)]
        )
        two.append(sum(r.tokens for r in results if not r.error) / wall)
    return PoolResult(
        streams_each=streams_each,
        one_model_tps=statistics.median(one),
        two_models_tps=statistics.median(two),
        load_ms=load_ms,
        loaded_first_token_ms=(after.ttft_s or 0) * 1000,
        jit_first_token_ms=(jit.ttft_s or 0) * 1000,
    )


def _streams(base: str, bodies: list[dict]):
    results, wall = asyncio.run(http_load.run_streams(base, "/v1/completions", bodies))
    failed = [r.error for r in results if r.error]
    if failed:
        raise RuntimeError(f"two-model run failed: {failed[0]}")
    return results, wall
