"""Warm-up work left after a model is ready: run by the engine thread one piece at a time while it
has nothing else to do, so start-to-ready pays only for what the first requests need (#25) and
a request that comes meanwhile waits for one piece at most. Engine thread only."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("lmx.engine")


@dataclass
class _Piece:
    path: str
    model_id: str
    name: str
    run: Callable[[], None]
    last: bool  # the model's last piece


class Warming:
    def __init__(self):
        self._pieces: deque[_Piece] = deque()
        self._spent: dict[str, list[tuple[str, float]]] = {}  # by path: the pieces run so far

    def __bool__(self) -> bool:
        return bool(self._pieces)

    def add(self, path: str, model_id: str, pieces: list[tuple[str, Callable[[], None]]]) -> None:
        for i, (name, run) in enumerate(pieces):
            self._pieces.append(_Piece(path, model_id, name, run, last=i == len(pieces) - 1))

    def drop(self, path: str | None = None) -> None:
        """Forget the pieces of the model at `path` (every model's when None): they hold the model."""
        self._pieces = deque(p for p in self._pieces if path is not None and p.path != path)
        self._spent = {k: v for k, v in self._spent.items() if path is not None and k != path}

    def run_next(self) -> None:
        piece = self._pieces.popleft()
        spent = self._spent.setdefault(piece.path, [])
        spent.append((piece.name, _timed(piece)))
        if piece.last:
            del self._spent[piece.path]
            log.info("Warm-up of %s finished in the background: %s", piece.model_id, summary(spent))


def run_now(model_id: str, pieces: list[tuple[str, Callable[[], None]]]) -> None:
    """The pieces at once, before the model is ready (LMX_WARM_UP=load, and a distributed group,
    whose ranks must step alike)."""
    spent = [(name, _timed(_Piece("", model_id, name, run, last=False))) for name, run in pieces]
    if spent:
        log.info("Warm-up of %s before ready: %s", model_id, summary(spent))


def summary(spent: list[tuple[str, float]]) -> str:
    """E.g. "16 pieces in 12.3s; longest 2048-token chunk 3.1s, 1024-token chunk 2.0s"."""
    longest = sorted(spent, key=lambda piece: -piece[1])[:3]
    return f"{len(spent)} pieces in {sum(t for _, t in spent):.1f}s; longest " + ", ".join(
        f"{name} {t:.1f}s" for name, t in longest
    )


def _timed(piece: _Piece) -> float:
    start = time.perf_counter()
    try:
        piece.run()
    except Exception as exc:  # noqa: BLE001 - the first request of that length will say, if anything
        log.warning("Warm-up of %s (%s) failed: %s", piece.model_id, piece.name, exc)
    spent = time.perf_counter() - start
    log.debug("Warm-up of %s: %s in %.0f ms", piece.model_id, piece.name, spent * 1000)
    return spent
