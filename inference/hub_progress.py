"""A hub download's progress, as `model_event` `downloading` events on /admin/events (the CLI's
`lmx pull` bar and the dashboard read them). huggingface_hub writes each file into the repo's
`blobs/` folder (as `<hash>.incomplete` until it is whole), so the folder's size is the progress
whatever the download's threads do."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from inference import signals

INTERVAL_S = 0.25


def repo_blobs(cache: Path, repo_id: str) -> Path:
    return cache / f"models--{repo_id.replace('/', '--')}" / "blobs"


def bytes_in(folder: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            with contextlib.suppress(OSError):
                total += entry.stat().st_size
    return total


def _announce(repo_id: str, done: int, total: int) -> None:
    signals.model_event.send(
        sender=repo_id,
        event={
            "type": "model_event",
            "action": "downloading",
            "model": repo_id,
            "bytes_done": min(done, total) if total else done,
            "bytes_total": total,
        },
    )


@contextlib.contextmanager
def reporting(*, repo_id: str, cache: Path, bytes_total: int) -> Iterator[None]:
    """Announce the bytes in the repo's blobs every INTERVAL_S while they change, and once whole
    when the body ends without an error."""
    blobs = repo_blobs(cache, repo_id)
    stop = threading.Event()

    def watch() -> None:
        last = -1
        while not stop.is_set():
            done = bytes_in(blobs)
            if done != last:
                _announce(repo_id, done, bytes_total)
                last = done
            stop.wait(INTERVAL_S)

    watcher = threading.Thread(target=watch, name="lmx-download-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=5)
    _announce(repo_id, bytes_total, bytes_total)
