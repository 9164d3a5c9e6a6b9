"""A long run against a running LMX: a realistic mix of clients in threads, each request counted
by outcome, and the server's and engine's resources sampled, minute by minute.

Outcomes: ok (answered), cancelled (we closed a stream after its first token, as a user does),
refused (a coded 4xx to a request meant to be refused), unexpected (a 4xx to a good request, or
a success for a bad one), 5xx, hung (no answer within the request timeout), lost (the connection
failed or a stream ended without its end)."""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import psutil
import websockets.exceptions
from websockets.sync.client import connect

from benchmarks.http_load import percentile

OUTCOMES = ("ok", "cancelled", "refused", "unexpected", "5xx", "hung", "lost")
SYSTEM = "You are a helpful assistant. Answer in one short sentence."  # a shared prefix, as agents send
TOPICS = ["France", "the moon", "rivers", "bread", "chess", "volcanoes", "owls", "copper", "jazz", "rain"]
MALFORMED: list[tuple[str, bytes | dict]] = [
    ("/v1/chat/completions", b'{"model": "x", "messages": ['),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"model": "{model}", "prompt": "x", "max_tokens": -5}),
    ("/v1/embeddings", {"model": "{model}", "input": []}),
    ("/v1/chat/completions", {"model": "{model}", "messages": [], "frobnicate": True}),
    ("/admin/models/load", {"model": "../../etc/passwd"}),
]


@dataclass
class Minute:
    outcomes: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    ttft_s: list[float] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # resources, every few seconds
    failures: list[str] = field(default_factory=list)  # what the 5xx, hung and lost were


class Soak:
    def __init__(self, url: str, *, model: str, swap_model: str | None, minutes: float, token: str = ""):
        self.url = url.rstrip("/")
        self.model, self.swap_model = model, swap_model
        self.seconds = minutes * 60
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.minutes: list[Minute] = []
        self.lock = threading.Lock()
        self.started = 0.0
        self.stop = threading.Event()
        # While the second model is in, memory and open files are those of two models: no
        # resource sample is taken then (a leak outlasts the swap; a swap's own files do not).
        self.swapping = threading.Event()
        self.server = _server_process(self.url)

    # ---- bookkeeping ---------------------------------------------------------------------
    def _minute(self) -> Minute:
        last = max(0, int(-(-self.seconds // 60)) - 1)  # what ends after the run counts in its last minute
        index = min(int((time.monotonic() - self.started) // 60), last)
        while len(self.minutes) <= index:
            self.minutes.append(Minute())
        return self.minutes[index]

    def count(self, kind: str, outcome: str, *, ttft: float | None = None, why: str = "") -> None:
        with self.lock:
            minute = self._minute()
            minute.outcomes[outcome] += 1
            minute.by_kind[kind] += 1
            if ttft is not None:
                minute.ttft_s.append(ttft)
            if outcome in ("5xx", "hung", "lost", "unexpected") and len(minute.failures) < 20:
                minute.failures.append(f"{kind}: {outcome} {why}"[:300])

    def request(self, kind: str, call: Callable[[], str | tuple[str, float | None]]) -> None:
        """Run one client request and count what came of it; exceptions are outcomes too."""
        try:
            result = call()
            outcome, ttft = result if isinstance(result, tuple) else (result, None)
            self.count(kind, outcome, ttft=ttft)
        except (httpx.TimeoutException, TimeoutError) as exc:
            self.count(kind, "hung", why=repr(exc))
        except (httpx.HTTPError, OSError, ValueError, websockets.exceptions.WebSocketException) as exc:
            self.count(kind, "lost", why=repr(exc))

    def _status(self, response: httpx.Response, *, expect_refusal: bool = False) -> str:
        code = response.status_code
        if code >= 500:
            return "5xx"
        if code >= 400:
            return "refused" if expect_refusal else "unexpected"
        return "unexpected" if expect_refusal else "ok"

    # ---- the clients -----------------------------------------------------------------------
    def _chat_body(self, *, model: str | None = None, max_tokens: int = 24) -> dict:
        topic = random.choice(TOPICS)
        return {
            "model": model or self.model,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Tell me one fact about {topic} (#{random.randint(0, 9999)})."},
            ],
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def stream_chat(self, http: httpx.Client, *, cancel_after_first: bool = False):
        t0 = time.monotonic()
        ttft = None
        with http.stream("POST", "/v1/chat/completions", json=self._chat_body()) as response:
            if response.status_code != 200:
                response.read()
                return self._status(response), None
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return "ok", ttft
                chunk = json.loads(data)
                if chunk.get("error"):
                    code = chunk["error"].get("code", "")
                    return ("5xx" if code == "internal-error" else "unexpected"), ttft
                if ttft is None and any(
                    (c.get("delta") or {}).get("content") for c in chunk.get("choices", [])
                ):
                    ttft = time.monotonic() - t0
                    if cancel_after_first:
                        return "cancelled", ttft  # closing the response drops the connection
        return "lost", ttft  # the stream ended without [DONE]

    def websocket_chat(self) -> str:
        ws_url = self.url.replace("http", "ws", 1) + "/v1/chat/stream"
        body = self._chat_body(max_tokens=16)
        del body["stream"], body["stream_options"]
        with connect(ws_url, additional_headers=self.headers, open_timeout=30) as ws:
            ws.send(json.dumps(body))
            while True:
                message = json.loads(ws.recv(timeout=120))
                if "error" in message:
                    code = message["error"].get("code", "")
                    return "5xx" if code == "internal-error" else "unexpected"
                if message.get("done"):
                    return "ok"

    def embeddings(self, http: httpx.Client) -> str:
        texts = [f"a sentence about {random.choice(TOPICS)}" for _ in range(random.randint(1, 4))]
        response = http.post("/v1/embeddings", json={"model": self.model, "input": texts})
        return self._status(response)

    def malformed(self, http: httpx.Client) -> str:
        path, body = random.choice(MALFORMED)
        if isinstance(body, bytes):
            response = http.post(path, content=body, headers={"Content-Type": "application/json"})
        else:
            text = json.dumps(body).replace("{model}", self.model)
            response = http.post(path, content=text, headers={"Content-Type": "application/json"})
        return self._status(response, expect_refusal=True)

    def subscribe_events(self, http: httpx.Client) -> str:
        """An SSE subscriber that reads a few seconds of /admin/events, then drops."""
        until = time.monotonic() + random.uniform(1, 6)
        with http.stream("GET", "/admin/events") as response:
            if response.status_code != 200:
                response.read()
                return self._status(response)
            for _ in response.iter_lines():
                if time.monotonic() > until:
                    return "cancelled"
        return "ok"

    def swap(self, http: httpx.Client) -> str:
        """Load a second model beside the first, ask it once, unload it."""
        self.swapping.set()
        try:
            loaded = http.post("/admin/models/load", json={"model": self.swap_model})
            if loaded.status_code != 200:
                return self._status(loaded)
            body = self._chat_body(model=self.swap_model, max_tokens=8)
            del body["stream"], body["stream_options"]
            asked = http.post("/v1/chat/completions", json=body)
            unloaded = http.post("/admin/models/unload", json={"model": self.swap_model})
            return next((self._status(r) for r in (asked, unloaded) if r.status_code != 200), "ok")
        finally:
            self.swapping.clear()

    # ---- the run ---------------------------------------------------------------------------
    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=httpx.Timeout(120, connect=10))

    def _loop(self, kind: str, call: Callable[[httpx.Client], object], *, pause: tuple[float, float]) -> None:
        with self._client() as http:
            while not self.stop.is_set():
                self.request(kind, lambda: call(http))
                self.stop.wait(random.uniform(*pause))

    def run(self, *, on_minute: Callable[[int, Minute], None] | None = None) -> list[Minute]:
        self.started = time.monotonic()
        workers = [
            ("stream", lambda h: self.stream_chat(h), (0.0, 0.5)),
            ("stream", lambda h: self.stream_chat(h), (0.0, 0.5)),
            ("stream", lambda h: self.stream_chat(h), (0.5, 2.0)),
            ("cancel", lambda h: self.stream_chat(h, cancel_after_first=True), (0.5, 2.0)),
            ("websocket", lambda h: self.websocket_chat(), (0.5, 2.0)),
            ("embeddings", self.embeddings, (0.5, 2.0)),
            ("sse", self.subscribe_events, (0.5, 3.0)),
            ("malformed", self.malformed, (0.2, 1.0)),
        ]
        if self.swap_model:
            workers.append(("swap", self.swap, (20.0, 30.0)))
        threads = [
            threading.Thread(target=self._loop, args=(kind, call), kwargs={"pause": pause}, daemon=True)
            for kind, call, pause in workers
        ]
        for thread in threads:
            thread.start()
        reported = 0
        while (elapsed := time.monotonic() - self.started) < self.seconds:
            with self.lock:
                if not self.swapping.is_set():
                    self._minute().samples.append(self._resources())
            while reported < int(elapsed // 60):
                if on_minute:
                    on_minute(reported, self.minutes[reported])
                reported += 1
            time.sleep(min(5.0, max(0.1, self.seconds - elapsed)))
        self.stop.set()
        for thread in threads:
            thread.join(timeout=150)
        with self.lock:
            hung = [t for t in threads if t.is_alive()]
            if hung:  # a client still waiting after its timeout: an unanswered request
                self.minutes[-1].outcomes["hung"] += len(hung)
            self.minutes[-1].samples.append(self._resources())
        while reported < len(self.minutes):
            if on_minute:
                on_minute(reported, self.minutes[reported])
            reported += 1
        return self.minutes

    def _resources(self) -> dict:
        if self.server is None:
            return {}
        try:
            engine = self.server.children(recursive=True)
            return {
                "server_rss": self.server.memory_info().rss,
                "engine_rss": sum(p.memory_info().rss for p in engine),
                "fds": self.server.num_fds() + sum(p.num_fds() for p in engine),
                "threads": self.server.num_threads() + sum(p.num_threads() for p in engine),
            }
        except psutil.Error:
            return {}


def _server_process(url: str) -> psutil.Process | None:
    """The process listening on the URL's port (the server; the engine is its child)."""
    port = urlsplit(url).port or 80
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    except psutil.AccessDenied:
        return None
    return None


# ---- the report ---------------------------------------------------------------------------------
def minute_row(index: int, minute: Minute) -> dict:
    def each(key: str, of=statistics.median) -> float | None:
        values = [s[key] for s in minute.samples if key in s]
        return of(values) if values else None

    ttft = minute.ttft_s
    return {
        "minute": index + 1,
        "requests": sum(minute.outcomes.values()),
        **{outcome: minute.outcomes.get(outcome, 0) for outcome in OUTCOMES},
        "ttft_p50_ms": None if not ttft else round(percentile(ttft, 50) * 1000),
        "ttft_p99_ms": None if not ttft else round(percentile(ttft, 99) * 1000),
        # At their least: a model being swapped in, caches and the clients' connections in
        # flight come and go within a minute; a leak raises the floor.
        "server_rss_mb": _mb(each("server_rss", of=min)),
        "engine_rss_mb": _mb(each("engine_rss", of=min)),
        "fds": each("fds", of=min),
        "threads": each("threads"),
        "kinds": dict(minute.by_kind),
        "failures": list(minute.failures),
    }


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value / 1e6, 1)


HEADERS = [
    ("minute", "min"),
    ("requests", "requests"),
    ("ok", "ok"),
    ("cancelled", "cancelled"),
    ("refused", "refused 4xx"),
    ("unexpected", "unexpected"),
    ("5xx", "5xx"),
    ("hung", "hung"),
    ("lost", "lost"),
    ("ttft_p50_ms", "TTFT p50 ms"),
    ("ttft_p99_ms", "TTFT p99 ms"),
    ("server_rss_mb", "server RSS MB (least)"),
    ("engine_rss_mb", "engine RSS MB (least)"),
    ("fds", "fds (fewest)"),
    ("threads", "threads"),
]


def markdown_row(row: dict) -> str:
    return (
        "| "
        + " | ".join(
            "–" if row[k] is None else f"{row[k]:g}" if isinstance(row[k], float) else str(row[k])
            for k, _ in HEADERS
        )
        + " |"
    )


def markdown_header() -> str:
    return "| " + " | ".join(h for _, h in HEADERS) + " |\n|" + "---|" * len(HEADERS)


def verdict(rows: list[dict], *, baseline_minute: int) -> dict:
    """The issue's invariants: no 5xx, none hung or lost, RSS and fds flat after the baseline."""
    after = [r for r in rows if r["minute"] >= baseline_minute]
    base = next((r for r in rows if r["minute"] == baseline_minute), None)

    def growth(key: str) -> float | None:
        if base is None or not base[key] or len(after) < 2:
            return None
        return round((max(r[key] for r in after if r[key] is not None) - base[key]) / base[key] * 100, 2)

    return {
        "baseline_minute": baseline_minute,
        "5xx": sum(r["5xx"] for r in rows),
        "hung": sum(r["hung"] for r in rows),
        "lost": sum(r["lost"] for r in rows),
        "unexpected": sum(r["unexpected"] for r in rows),
        "requests": sum(r["requests"] for r in rows),
        "server_rss_growth_pct": growth("server_rss_mb"),
        "engine_rss_growth_pct": growth("engine_rss_mb"),
        "fds_growth_pct": growth("fds"),
        "threads_growth_pct": growth("threads"),
    }
