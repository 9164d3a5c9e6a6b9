"""The disk tier of the prompt caches: KV caches kept in blocks of tokens, across evictions from
RAM, model reloads and restarts.

A prompt's tokens are cut into blocks of `block` tokens; block j is named by a hash chained over
blocks 1..j, so a file names the whole prefix it ends, and a shared system prompt is found
whatever follows it. Each block's keys and values are one safetensors file written by mlx-lm's
`save_prompt_cache` (read back by `load_prompt_cache`), in a folder per model identity (its path,
its weights' sizes and times, how it was loaded): a reload or a restart finds them, another
model never does. Files are written by one background thread (never the engine's), under a
temporary name then renamed, so a partial file is never found; a file that cannot be read back is
deleted and the chain stops before it. Past the byte budget the least recently used blocks go,
the deepest of a chain first (its start is what other prompts share).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_map
from mlx_lm.models.cache import KVCache, QuantizedKVCache, load_prompt_cache, save_prompt_cache

from inference.engine.mlx_compat.quantized_cache import RowQuantizedKVCache

log = logging.getLogger("lmx.engine")

SUFFIX = ".safetensors"
TMP = ".tmp"  # a file being written ends in .tmp.safetensors until it is renamed
MAX_PENDING_BYTES = 2 << 30  # blocks copied for the writer and not yet written; past it, left for later


@dataclass(frozen=True)
class DiskFile:
    path: Path
    depth: int  # blocks of the prefix it ends
    size: int
    used_ns: int  # last use (its mtime), for LRU


def model_identity(spec, *, backend: str, kv_bits: int | None) -> str:
    """What makes two loads' caches interchangeable: the files (path, sizes, times), how the
    weights were turned into MLX arrays, and the KV cache's format."""
    root = Path(spec.path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    stamp = [(str(p), s.st_size, s.st_mtime_ns) for p in files for s in [p.stat()]]
    key = json.dumps([stamp, backend, kv_bits, spec.quantization], default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def chain(tokens: list[int], block: int) -> list[str]:
    """The hash naming each full block's prefix, in order."""
    hashes, previous = [], b""
    for start in range(0, len(tokens) - block + 1, block):
        digest = hashlib.blake2b(
            previous + array("q", tokens[start : start + block]).tobytes(), digest_size=16
        )
        previous = digest.digest()
        hashes.append(digest.hexdigest())
    return hashes


def storable(cache) -> bool:
    """Whether a request's cache can be cut into blocks (plain or quantized KV in every layer)."""
    return bool(cache) and all(type(c) in (KVCache, QuantizedKVCache, RowQuantizedKVCache) for c in cache)


class DiskTier:
    """Every model's blocks under `root`, one byte budget, one writer thread."""

    def __init__(self, root: str | Path, *, budget_bytes: int, block: int):
        self.root = Path(root)
        self.budget = budget_bytes
        self.block = block
        self._lock = threading.Lock()
        self._files: dict[Path, DiskFile] = {}
        self._bytes = 0
        self._jobs: queue.Queue = queue.Queue()
        self._pending = 0
        self.written = 0  # blocks written since start
        self.root.mkdir(parents=True, exist_ok=True)
        self._scan()
        threading.Thread(target=self._write_loop, name="lmx-disk-cache", daemon=True).start()

    @property
    def size(self) -> int:
        return self._bytes

    @property
    def count(self) -> int:
        return len(self._files)

    def for_model(self, identity: str, label: str) -> ModelBlocks:
        folder = self.root / identity
        folder.mkdir(exist_ok=True)
        about = folder / "model.json"
        if not about.exists():
            about.write_text(json.dumps({"model": label}))
        return ModelBlocks(self, folder)

    # --- index (any thread, under the lock) ------------------------------------------------
    def _scan(self) -> None:
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.endswith(TMP + SUFFIX):  # a write cut short by a stop
                    path.unlink(missing_ok=True)
                elif path.name.endswith(SUFFIX):
                    self._add(path)

    def _add(self, path: Path) -> None:
        try:
            stat = path.stat()
            depth = int(path.name.split("-", 1)[0])
        except (OSError, ValueError):
            return
        with self._lock:
            old = self._files.get(path)
            self._bytes += stat.st_size - (old.size if old else 0)
            self._files[path] = DiskFile(path, depth, stat.st_size, stat.st_mtime_ns)

    def forget(self, path: Path) -> None:
        """A file that could not be read back: deleted, never served."""
        with self._lock:
            old = self._files.pop(path, None)
            self._bytes -= old.size if old else 0
        path.unlink(missing_ok=True)

    def has(self, path: Path) -> bool:
        return path in self._files

    def touch(self, paths: list[Path]) -> None:
        """Used now: one time for all, so the deepest of a chain goes first on eviction."""
        now = time.time_ns()
        with self._lock:
            for path in paths:
                f = self._files.get(path)
                if f is None:
                    continue
                try:
                    os.utime(path, ns=(now, now))
                except OSError:
                    continue
                self._files[path] = DiskFile(path, f.depth, f.size, now)

    def _evict(self) -> None:
        with self._lock:
            if self._bytes <= self.budget:
                return
            for f in sorted(self._files.values(), key=lambda f: (f.used_ns, -f.depth)):
                if self._bytes <= self.budget:
                    break
                f.path.unlink(missing_ok=True)
                del self._files[f.path]
                self._bytes -= f.size

    # --- writing (the writer thread) -------------------------------------------------------
    def reserve(self, nbytes: int) -> bool:
        """Room for `nbytes` more of copies waiting for the writer; False when too much already
        waits (those blocks are left for a later request of that prompt to write)."""
        with self._lock:
            if self._pending + nbytes > MAX_PENDING_BYTES:
                return False
            self._pending += nbytes
            return True

    def submit(self, blocks: list[tuple[Path, list, dict]], nbytes: int) -> None:
        """Queue blocks (path, per-layer caches of its tokens, metadata), `nbytes` reserved."""
        self._jobs.put((blocks, nbytes))

    def _write_loop(self) -> None:
        while True:
            blocks, nbytes = self._jobs.get()
            now = time.time_ns()
            try:
                for path, caches, metadata in blocks:
                    if self.has(path):
                        continue
                    tmp = path.with_name(path.name[: -len(SUFFIX)] + TMP + SUFFIX)
                    try:
                        save_prompt_cache(str(tmp), caches, metadata)
                        os.replace(tmp, path)
                        os.utime(path, ns=(now, now))
                    except Exception:  # a full disk or a removed folder: those blocks are not kept
                        log.warning("Could not write prompt-cache block %s", path, exc_info=True)
                        tmp.unlink(missing_ok=True)
                        continue
                    self._add(path)
                    self.written += 1
                self._evict()
            finally:
                with self._lock:
                    self._pending -= nbytes
                self._jobs.task_done()

    def flush(self) -> None:
        """Wait until every queued block is written (tests, shutdown)."""
        self._jobs.join()


class ModelBlocks:
    """One model identity's blocks."""

    def __init__(self, tier: DiskTier, folder: Path):
        self.tier = tier
        self.folder = folder
        self.block = tier.block

    def _path(self, depth: int, digest: str) -> Path:
        return self.folder / f"{depth:05d}-{digest}{SUFFIX}"

    def reach(self, tokens: list[int], limit: int) -> tuple[int, list[str]]:
        """(blocks of `tokens` on disk from the start, at most `limit`; the chain)."""
        hashes = chain(tokens[: limit * self.block], self.block)
        found = 0
        for depth, digest in enumerate(hashes, 1):
            if not self.tier.has(self._path(depth, digest)):
                break
            found = depth
        return found, hashes

    def load(self, hashes: list[str], blocks: int) -> tuple[list | None, int]:
        """(a cache holding the first `blocks` blocks, or fewer where a file was bad; blocks read)."""
        parts, used = [], []
        for depth, digest in enumerate(hashes[:blocks], 1):
            path = self._path(depth, digest)
            try:
                cache, meta = load_prompt_cache(str(path), return_metadata=True)
                if meta.get("hash") != digest or (parts and len(cache) != len(parts[0])):
                    raise ValueError("block does not match its name")
            except Exception:  # noqa: BLE001 - truncated, corrupt or foreign: never served
                log.warning("Prompt-cache block %s could not be read; deleted", path.name)
                self.tier.forget(path)
                break
            parts.append(cache)
            used.append(path)
        if not parts:
            return None, 0
        self.tier.touch(used)
        return [_join([p[layer] for p in parts]) for layer in range(len(parts[0]))], len(parts)

    def save(self, tokens: list[int], cache) -> int:
        """Queue the full blocks of `tokens` (held by `cache`) not on disk yet; blocks queued.
        Engine thread: the blocks are copied out of the cache here, written by the writer."""
        if not storable(cache):
            return 0
        held = min(len(tokens), cache[0].offset)
        hashes = chain(tokens[:held], self.block)
        new = [(d, h) for d, h in enumerate(hashes, 1) if not self.tier.has(self._path(d, h))]
        if not new:
            return 0
        per_block = _bytes_per_token(cache) * self.block
        blocks, arrays = [], []
        for depth, digest in new:  # in order: a chain is only ever found from its start
            if not self.tier.reserve(per_block):
                break
            start = (depth - 1) * self.block
            layers = [_slice(c, start, start + self.block) for c in cache]
            arrays.extend(c.state for c in layers)
            blocks.append((self._path(depth, digest), layers, {"hash": digest, "depth": str(depth)}))
        if blocks:
            mx.eval(arrays)  # copied now: the request's cache may change once this returns
            self.tier.submit(blocks, per_block * len(blocks))
        return len(blocks)


def _bytes_per_token(cache) -> int:
    """Bytes of keys and values one token takes across the layers."""
    total = 0
    for c in cache:
        arrays = [*c.keys, *c.values] if isinstance(c, QuantizedKVCache) else [c.keys, c.values]
        total += sum(a.nbytes // max(a.shape[2], 1) for a in arrays)
    return total


def _slice(c, start: int, end: int):
    """Tokens [start, end) of one layer's cache, as a cache of its own (copied)."""
    if isinstance(c, QuantizedKVCache):
        part = QuantizedKVCache(group_size=c.group_size, bits=c.bits)
        part.keys, part.values = tree_map(lambda x: mx.contiguous(x[..., start:end, :]), (c.keys, c.values))
    else:
        part = KVCache()
        part.keys = mx.contiguous(c.keys[..., start:end, :])
        part.values = mx.contiguous(c.values[..., start:end, :])
    part.offset = end - start
    return part


def _join(parts: list):
    """One layer's cache from its blocks, in order."""
    first = parts[0]
    if isinstance(first, QuantizedKVCache):
        joined = RowQuantizedKVCache(group_size=first.group_size, bits=first.bits)
        joined.keys, joined.values = tree_map(
            lambda *xs: mx.concatenate(xs, axis=2), *[(p.keys, p.values) for p in parts]
        )
    else:
        joined = KVCache()
        joined.keys = mx.concatenate([p.keys for p in parts], axis=2)
        joined.values = mx.concatenate([p.values for p in parts], axis=2)
    joined.offset = sum(p.offset for p in parts)
    return joined
