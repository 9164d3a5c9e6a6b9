"""The store's index (#26 item 2): listings come from the last scan while the store is unchanged,
a change is seen at once, and a scan that hangs does not hold a request past its bound."""

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from inference import store
from inference.store_index import StoreIndex
from tests.conftest import GGUF_ID, MLX_ID


@pytest.fixture
def store_dir(settings, model_store: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(model_store / MLX_ID, root / MLX_ID, copy_function=os.link)
    settings.LMX_MODELS_DIR = root
    settings.LMX_EXTRA_MODEL_DIRS = []
    settings.LMX_HF_CACHE = str(tmp_path / "hf")
    return root


@pytest.fixture
def counted_scans(monkeypatch):
    """store.scan as it is, counted; a test may hold it at a gate (a slow disk)."""
    real = store.scan
    calls = {"n": 0, "gate": None}

    def scan():
        calls["n"] += 1
        if calls["gate"] is not None:
            calls["gate"].wait(10)
        return real()

    monkeypatch.setattr(store, "scan", scan)
    return calls


def test_an_unchanged_store_is_not_scanned_again(store_dir, counted_scans):
    index = StoreIndex()
    first = index.models(wait_s=10)
    assert [s.id for s in first] == [MLX_ID]
    assert [s.id for s in index.models(wait_s=10)] == [MLX_ID]
    assert counted_scans["n"] == 1


def test_a_new_removed_or_rewritten_file_shows_on_the_next_listing(store_dir, model_store, counted_scans):
    index = StoreIndex()
    index.models(wait_s=10)
    os.link(model_store / GGUF_ID, store_dir / GGUF_ID)
    assert sorted(s.id for s in index.models(wait_s=10)) == sorted([MLX_ID, GGUF_ID])
    (store_dir / GGUF_ID).unlink()
    assert [s.id for s in index.models(wait_s=10)] == [MLX_ID]
    crafted = store_dir / "crafted.gguf"
    crafted.write_bytes(b"GGUF" + bytes(64))
    first = {s.id: s for s in index.models(wait_s=10)}["crafted.gguf"].extra["error"]
    with crafted.open("r+b") as f:  # rewritten in place: another fault
        f.write(b"GGUF\x03\x00\x00\x00" + (2**62).to_bytes(8, "little") * 2)
    second = {s.id: s for s in index.models(wait_s=10)}["crafted.gguf"].extra["error"]
    assert first != second and "4611686018427387904" in second
    assert counted_scans["n"] == 5


def test_a_scan_that_hangs_answers_with_the_last_one_within_the_bound(store_dir, model_store, counted_scans):
    index = StoreIndex()
    index.models(wait_s=10)
    counted_scans["gate"] = gate = threading.Event()
    os.link(model_store / GGUF_ID, store_dir / GGUF_ID)
    started = time.monotonic()
    assert [s.id for s in index.models(wait_s=0.3)] == [MLX_ID]  # the last finished scan
    assert time.monotonic() - started < 5
    gate.set()
    deadline = time.monotonic() + 10
    while GGUF_ID not in [s.id for s in index.models(wait_s=1)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert GGUF_ID in [s.id for s in index.models(wait_s=1)]


def test_the_watcher_reads_a_new_file_before_anyone_asks(store_dir, model_store, counted_scans, settings):
    settings.LMX_STORE_POLL_S = 0.05
    index = StoreIndex()
    index.models(wait_s=10)
    index.watch()
    os.link(model_store / GGUF_ID, store_dir / GGUF_ID)
    deadline = time.monotonic() + 10
    # Nobody asks meanwhile (a listing would ask for a scan of its own): the watcher's scan is
    # looked at where it lands.
    while GGUF_ID not in [s.id for s in index._specs or []] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert GGUF_ID in [s.id for s in index.models(wait_s=0)]
    assert counted_scans["n"] == 2  # scanned by the watcher alone: the listings took its scan
