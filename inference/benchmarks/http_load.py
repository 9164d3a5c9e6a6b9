"""Streaming HTTP clients for the benchmark: N concurrent OpenAI-style streams, and a probe poller."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx


@dataclass
class StreamResult:
    started: float
    first: float | None = None  # first generated text
    last: float | None = None  # last generated text
    ended: float | None = None
    pieces: int = 0
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    text: str = ""
    error: str | None = None

    @property
    def tokens(self) -> int:
        return self.completion_tokens if self.completion_tokens is not None else self.pieces

    @property
    def ttft_s(self) -> float | None:
        return None if self.first is None else self.first - self.started

    @property
    def decode_tps(self) -> float | None:
        if self.first is None or self.last is None or self.last <= self.first or self.tokens < 2:
            return None
        return (self.tokens - 1) / (self.last - self.first)


def _piece(chunk: dict) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    return choice.get("text") or (choice.get("delta") or {}).get("content") or ""


async def stream_one(client: httpx.AsyncClient, url: str, body: dict) -> StreamResult:
    result = StreamResult(started=time.perf_counter())
    try:
        async with client.stream("POST", url, json=body) as reply:
            if reply.status_code != 200:
                result.error = f"HTTP {reply.status_code}: {(await reply.aread())[:300]!r}"
                return result
            async for line in reply.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = str(chunk["error"])
                    break
                piece = _piece(chunk)
                if piece:
                    now = time.perf_counter()
                    result.first = result.first or now
                    result.last = now
                    result.pieces += 1
                    result.text += piece
                usage = chunk.get("usage")
                if usage:
                    result.completion_tokens = usage.get("completion_tokens")
                    result.prompt_tokens = usage.get("prompt_tokens")
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.ended = time.perf_counter()
    return result


async def run_streams(base: str, path: str, bodies: list[dict]) -> tuple[list[StreamResult], float]:
    """Send every body at once; (results, wall seconds from the first send to the last end)."""
    limits = httpx.Limits(max_connections=len(bodies) + 8, max_keepalive_connections=len(bodies) + 8)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(stream_one(client, base + path, b) for b in bodies))
        return list(results), time.perf_counter() - start


class ProbePoller:
    """GET `path` every `interval` seconds from a process of its own, over one kept-alive
    connection with a bare socket: the latencies are the server's, not those of a client
    busy reading the streams under test."""

    def __init__(self, base: str, path: str, interval: float = 0.01):
        import multiprocessing
        from urllib.parse import urlsplit

        url = urlsplit(base)
        ctx = multiprocessing.get_context("spawn")
        self._ready, self._stop = ctx.Event(), ctx.Event()
        self._results = ctx.Queue()
        self._process = ctx.Process(
            target=_poll,
            args=(url.hostname, url.port, path, interval, self._ready, self._stop, self._results),
            daemon=True,
        )

    def __enter__(self) -> ProbePoller:
        self._process.start()
        # a spawned process takes a while to start: measure the whole run, not only its tail
        if not self._ready.wait(60):
            raise TimeoutError("the probe process did not start within 60 s")
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.samples: list[tuple[float, float]] = self._results.get(timeout=60)  # (time.time(), s)
        self.latencies = [latency for _, latency in self.samples]
        self._process.join(10)


def _poll(host: str, port: int, path: str, interval: float, ready, stop, results) -> None:
    import re
    import socket

    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    samples: list[tuple[float, float]] = []
    sock, buffered = None, b""
    try:
        while not stop.is_set():
            if sock is None:
                sock, buffered = socket.create_connection((host, port), timeout=30), b""
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sent, start = time.time(), time.perf_counter()
            try:
                sock.sendall(request)
                while b"\r\n\r\n" not in buffered:
                    buffered += _recv(sock)
                head, _, rest = buffered.partition(b"\r\n\r\n")
                length = int(re.search(rb"content-length:\s*(\d+)", head, re.I).group(1))
                while len(rest) < length:
                    rest += _recv(sock)
            except (OSError, ConnectionError):
                sock.close()
                sock = None  # the server closed the connection: reconnect, do not count it
                continue
            samples.append((sent, time.perf_counter() - start))
            ready.set()
            buffered = rest[length:]
            time.sleep(interval)
    finally:
        results.put(samples)
        if sock is not None:
            sock.close()


def _recv(sock) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("closed")
    return data


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]
