"""The model store as requests see it: the last scan, kept here and refreshed off the request path.

A request only stats the store's folders and files (no header is read, no file opened) to see
whether anything changed since the last scan. A change wakes the scanner thread, which the request
waits for up to LMX_STORE_SCAN_WAIT_S; past that it answers with what the last finished scan
found, so one slow or hostile file never holds a listing or a load. While the server runs a
watcher checks every LMX_STORE_POLL_S, so a new file's header is read before anyone asks for it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from inference import conf, store
from inference.store import ModelSpec

log = logging.getLogger("lmx.store")
_MAX_ENTRIES = 50_000  # stat calls one change check may make (a store holds tens of models)
_DEPTH = 4  # the scan's 3 levels of folders, and the files inside a model folder


def _stamp_tree(root: Path, depth: int, out: list, only_prefix: str = "") -> None:
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if len(out) >= _MAX_ENTRIES:
            return
        if entry.name.startswith(".") or not entry.name.startswith(only_prefix):
            continue
        try:
            st = entry.stat()  # follows symlinks: a replaced target is a change
            is_dir = entry.is_dir()
        except OSError:  # a dangling link or a loop: its presence is what counts
            out.append((entry.path, -1, -1))
            continue
        out.append((entry.path, st.st_size if not is_dir else 0, st.st_mtime_ns))
        if is_dir and depth > 1:  # a link to a parent folder ends at the depth bound
            _stamp_tree(Path(entry.path), depth - 1, out)


def fingerprint() -> tuple:
    """What the store holds, as names, sizes and modification times: equal means unchanged."""
    out: list = []
    for root in [conf.models_dir(), *conf.get("LMX_EXTRA_MODEL_DIRS")]:
        out.append(("root", str(root)))
        _stamp_tree(Path(root).expanduser(), _DEPTH, out)
    out.append(("hf", ""))
    _stamp_tree(conf.hf_cache_dir(), _DEPTH, out, only_prefix="models--")
    return tuple(out)


class StoreIndex:
    """The last scan and the one thread that makes the next (at most one runs at a time)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._specs: list[ModelSpec] | None = None
        self._stamp: tuple | None = None
        self._asked = 0  # scans asked for
        self._served = 0  # the last ask a finished scan answers
        self._running: tuple[int, tuple | None] | None = None  # the scan under way: (ticket, stamp)
        self._worker: threading.Thread | None = None
        self._watcher: threading.Thread | None = None

    def models(self, *, wait_s: float | None = None) -> list[ModelSpec]:
        """Every model on disk: the cached scan while the store is unchanged, else a new scan
        waited for at most `wait_s` (then the previous scan's list)."""
        stamp = fingerprint()
        with self._cond:
            if self._specs is not None and stamp == self._stamp:
                return list(self._specs)
            if self._running is not None and self._running[1] == stamp:
                ticket = self._running[0]  # the scan under way already sees this store
            else:
                self._asked += 1
                ticket = self._asked
            if self._worker is None:
                self._worker = threading.Thread(target=self._scan_loop, name="lmx-store-scan", daemon=True)
                self._worker.start()
            wait = conf.get("LMX_STORE_SCAN_WAIT_S") if wait_s is None else wait_s
            if not self._cond.wait_for(lambda: self._served >= ticket, timeout=wait) and wait > 0:
                log.warning("the model store's scan took over %.1f s: answering with the last one", wait)
            return list(self._specs or [])

    def _scan_loop(self) -> None:
        while True:
            with self._cond:
                if self._served >= self._asked:
                    self._worker = None
                    return
                ticket = self._asked
            stamp = fingerprint()  # taken first: a change during the scan is seen by the next check
            with self._cond:
                self._running = (ticket, stamp)
            started = time.monotonic()
            try:
                specs = store.scan()
            except Exception:  # the scan guards every file; this is the last line, not the plan
                log.exception("scanning the model store failed; keeping the last scan")
                specs, stamp = self._specs or [], None
            log.debug("scanned the model store in %.3f s: %d models", time.monotonic() - started, len(specs))
            with self._cond:
                self._specs, self._stamp, self._served, self._running = specs, stamp, ticket, None
                self._cond.notify_all()

    def watch(self) -> None:
        """Check the store every LMX_STORE_POLL_S from a daemon thread (once per process)."""
        with self._cond:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(target=self._watch_loop, name="lmx-store-watch", daemon=True)
            self._watcher.start()

    def _watch_loop(self) -> None:
        while True:
            try:
                self.models(wait_s=0)
            except Exception:
                log.exception("checking the model store failed")
            time.sleep(conf.get("LMX_STORE_POLL_S"))


index = StoreIndex()
