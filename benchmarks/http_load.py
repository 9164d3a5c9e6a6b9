"""Streaming HTTP clients for the benchmark: N concurrent OpenAI-style streams, and a probe poller.

Both speak HTTP over bare sockets, so what they time is the server, not a client library."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class StreamResult:
    started: float
    first: float | None = None  # first generated text
    last: float | None = None  # last generated text
    ended: float | None = None
    pieces: int = 0
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens
    text: str = ""
    error: str | None = None
    times: list[float] = field(default_factory=list)  # when each piece of text arrived

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


async def stream_one(base: str, path: str, body: dict, result: StreamResult | None = None) -> StreamResult:
    """POST `body` and read the server-sent events as they come, over a bare HTTP/1.1 connection.

    No HTTP library: httpx took ~5 ms of the client's own per request on the H100 machine
    (time to first token 62.3 ms with this client, 67.9 ms with httpx, same server, same run;
    docs/BENCHMARKS.md), which a comparison with mlx-lm in-process would have charged to LMX."""
    url = urlsplit(base)
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nConnection: close\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    if result is None:
        result = StreamResult(started=time.perf_counter())
    result.started = time.perf_counter()
    writer = None
    try:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(head + data)
        status, headers = await _read_head(reader)
        if status != 200:
            reply = b"".join([piece async for piece in _body(reader, headers)])
            result.error = f"HTTP {status}: {reply[:300]!r}"
            return result
        events = _Events(result)
        async for piece in _body(reader, headers):
            if events.feed(piece):
                break
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.ended = time.perf_counter()
        if writer is not None:
            writer.close()
    return result


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    line = await reader.readline()
    if not line:
        raise ConnectionError("the server closed the connection without answering")
    status = int(line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    return status, headers


async def _body(reader: asyncio.StreamReader, headers: dict[str, str]):
    """The body's bytes as they arrive: chunked (Daphne), sized, or up to the close
    (mlx_lm.server answers HTTP/1.0-style)."""
    if headers.get("transfer-encoding") == "chunked":
        while size := int((await reader.readline()).split(b";")[0], 16):
            yield (await reader.readexactly(size + 2))[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while piece := await reader.read(65536):
            yield piece


class _Events:
    """Server-sent events into a StreamResult; `feed` says when the stream has ended."""

    def __init__(self, result: StreamResult):
        self.result, self.pending = result, b""

    def feed(self, data: bytes) -> bool:
        *lines, self.pending = (self.pending + data).split(b"\n")
        return any(self._line(line.decode().strip()) for line in lines)

    def _line(self, line: str) -> bool:
        if not line.startswith("data:"):
            return False
        data = line[5:].strip()
        if data == "[DONE]":
            return True
        chunk = json.loads(data)
        result = self.result
        if "error" in chunk:
            result.error = str(chunk["error"])
            return True
        piece = _piece(chunk)
        if piece:
            now = time.perf_counter()
            result.first = result.first or now
            result.last = now
            result.pieces += 1
            result.text += piece
            result.times.append(now)
        usage = chunk.get("usage")
        if usage:
            result.completion_tokens = usage.get("completion_tokens")
            result.prompt_tokens = usage.get("prompt_tokens")
            result.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        return False


async def run_streams(base: str, path: str, bodies: list[dict]) -> tuple[list[StreamResult], float]:
    """Send every body at once, each on its own connection; (results, wall seconds from the
    first send to the last end)."""
    start = time.perf_counter()
    results = await asyncio.gather(*(stream_one(base, path, body) for body in bodies))
    return list(results), time.perf_counter() - start


class ProbePoller:
    """GET `path` every `interval` seconds from a process of its own, over one kept-alive
    connection with a bare socket: the latencies are the server's, not those of a client
    busy reading the streams under test."""

    def __init__(self, base: str, path: str, interval: float = 0.01):
        import multiprocessing

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
