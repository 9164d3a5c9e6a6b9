"""Live events, the memory guardian, and the operators' console on a real server."""

import json
import threading
import time

import httpx

from tests.conftest import GGUF_ID, MLX_ID, wait_for

QUESTION = [{"role": "user", "content": "Tell me a long story about a dragon."}]


class SSEReader:
    """A real SSE client in a thread, collecting every `data:` event."""

    def __init__(self, url: str, *, stall: bool = False):
        self.events: list[dict] = []
        self.stall = stall
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()

    def _run(self, url):
        try:
            self._read(url)
        except httpx.HTTPError:
            pass  # the server went away at the end of the test

    def _read(self, url):
        with httpx.stream("GET", url + "/admin/events", timeout=None) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if self.stall:  # reads one line, then never again
                    self._stop.wait()
                    return
                if line.startswith("data: "):
                    self.events.append(json.loads(line[6:]))

    def types(self) -> set[str]:
        return {e["type"] for e in self.events}

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def close(self):
        self._stop.set()


def test_events_stream_every_type_to_several_clients_while_one_stalls(make_server):
    srv = make_server(env={"LMX_EVENTS_MEMORY_S": "1", "LMX_EVENTS_HEARTBEAT_S": "2"})
    a, b, stalled = SSEReader(srv.url), SSEReader(srv.url), SSEReader(srv.url, stall=True)
    try:
        assert wait_for(lambda: "heartbeat" in a.types() and "memory" in b.types(), timeout=10)
        with srv.client() as http:
            assert http.post("/admin/models/load", json={"model": MLX_ID}).status_code == 200
            with http.stream(
                "POST",
                "/v1/chat/completions",
                json={"model": MLX_ID, "messages": QUESTION, "max_tokens": 30, "stream": True},
            ) as r:
                for _ in r.iter_lines():
                    pass
            assert http.post("/admin/models/load", json={"model": "missing"}).status_code == 404
        assert wait_for(
            lambda: (
                {"throughput", "model_event", "error"} <= a.types()
                and {"throughput", "model_event", "error"} <= b.types()
            ),
            timeout=10,
        )
        for reader in (a, b):
            loaded = [e for e in reader.of("model_event") if e["action"] == "loaded"]
            assert loaded[0]["model"] == MLX_ID and loaded[0]["vram_gb"] > 0 and loaded[0]["load_time_ms"] > 0
            busy = [e for e in reader.of("throughput") if e["tokens_per_second"] > 0]
            assert busy and busy[0]["model"] == MLX_ID and busy[0]["active_requests"] >= 0
            assert reader.of("error")[0]["code"] == "model-not-found"
            mem = reader.of("memory")[-1]
            assert mem["vram_total_gb"] > 0 and 0 < mem["pct"] < 100
            assert reader.of("heartbeat")[-1]["uptime"] > 0
        count = len(a.events)
        assert wait_for(lambda: len(a.events) > count + 2, timeout=6)  # still live after all that
    finally:
        for reader in (a, b, stalled):
            reader.close()
    assert wait_for(
        lambda: "WARNING:  SSE client disconnected: ConnectionResetError" in srv.stdout(), timeout=15
    )
    assert "WARNING:  SSE client disconnected: ConnectionResetError" in srv.stderr()


def test_guardian_steps_down_caches_idle_model_new_work_then_the_busy_model(make_server, server_db):
    """Warning: prompt caches dropped, then the idle model evicted while the busy one streams on.
    Critical: new work refused with Retry-After, then the busy model unloaded: every stream ends
    with oom-unloaded, /healthz answers throughout."""
    from monitoring.models import ErrorEvent

    srv = make_server(env={"LMX_EVENTS_MEMORY_S": "1"}, default_model=MLX_ID, wait_ready=True)
    with srv.client() as http:
        assert http.post("/admin/models/load", json={"model": GGUF_ID}).status_code == 200  # idle
    events = SSEReader(srv.url)
    results: dict[int, list] = {}
    probes: list[tuple[int, int]] = []
    late: list[httpx.Response] = []
    streaming = threading.Barrier(5)

    def stream(i: int):
        chunks = []
        with httpx.stream(
            "POST",
            srv.url + "/v1/chat/completions",
            timeout=120,
            json={
                "model": MLX_ID,
                "messages": QUESTION,
                "max_tokens": 3000,
                "stream": True,
                "temperature": 0,
            },
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    chunks.append(line[6:])
                    if len(chunks) == 3:
                        streaming.wait(60)
        results[i] = chunks

    def probe():
        while len(results) < 4:
            probes.append(
                (httpx.get(srv.url + "/healthz").status_code, httpx.get(srv.url + "/readyz").status_code)
            )
            time.sleep(0.2)

    def knock_once():
        late.append(
            httpx.post(
                srv.url + "/v1/chat/completions",
                json={"model": MLX_ID, "messages": QUESTION, "max_tokens": 1},
                timeout=60,
            )
        )

    def knock():  # new work while memory is critical, each request on its own (one may wait in line)
        knocks = []
        while len(results) < 4:
            knocks.append(threading.Thread(target=knock_once))
            knocks[-1].start()
            time.sleep(0.1)
        for t in knocks:
            t.join(60)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    streaming.wait(120)  # all four are mid-stream
    prober = threading.Thread(target=probe)
    prober.start()
    with srv.client() as http:
        pct = http.get("/admin/memory").json()["pct"]  # the models are 0.4-2 % of this machine
        assert pct > 0
        http.post("/admin/memory", json={"warning_pct": pct / 4, "critical_pct": 99})
        steps = lambda: [e.get("action") for e in events.of("memory_warning")]  # noqa: E731
        assert wait_for(lambda: steps() == ["prompt_caches_dropped", "model_evicted"], timeout=10), steps()
        assert events.of("memory_warning")[1]["model"] == GGUF_ID
        assert [m["id"] for m in http.get("/admin/models").json()["models"] if m["loaded"]] == [MLX_ID]
        assert len(results) == 0  # the busy model streams on
        pct = http.get("/admin/memory").json()["pct"]
        knocker = threading.Thread(target=knock)
        knocker.start()
        http.post("/admin/memory", json={"warning_pct": pct / 4, "critical_pct": pct / 2})
    for t in threads:
        t.join(60)
    prober.join(30)
    knocker.join(60)
    events.close()

    assert len(results) == 4
    for chunks in results.values():
        assert chunks[-1] == "[DONE]"
        assert json.loads(chunks[-2])["error"]["code"] == "oom-unloaded"
    critical = [e for e in events.events if e["type"] == "memory_critical"]
    assert [e["action"] for e in critical] == ["new_work_refused", "model_unloaded"]
    assert critical[1]["model"] == MLX_ID and critical[1]["pct"] >= pct / 2
    refused = [r for r in late if r.status_code != 200 and r.json()["error"]["code"] == "insufficient-memory"]
    assert refused and all(r.status_code == 503 and int(r.headers["retry-after"]) > 0 for r in refused)
    actions = [(e["action"], e["model"]) for e in events.events if e["type"] == "model_event"]
    assert ("evicted", GGUF_ID) in actions and ("unloaded", MLX_ID) in actions
    with srv.client() as http:
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"] == "oom-unloaded"
        after = http.post("/v1/chat/completions", json={"model": MLX_ID, "messages": QUESTION})
        assert after.status_code == 503 and after.json()["error"]["code"] == "oom-unloaded"
    assert all(h == 200 for h, _ in probes) and probes
    out = srv.stdout()
    assert "ERROR:    Memory critical at " in out and "% — refusing new work\n" in out
    assert "% — unloading model\n" in out and "INFO:     Model unloaded, freed " in out
    assert "ERROR:    Memory critical at " in srv.stderr()
    rows = ErrorEvent.objects.using(server_db(srv))
    assert rows.filter(code="oom-unloaded", endpoint="POST /v1/chat/completions").count() >= 5  # 4 + after
    assert rows.filter(code="oom-unloaded", endpoint="memory-guardian", severity="critical").count() == 1
    assert rows.filter(code="insufficient-memory", endpoint="memory-guardian").count() == 2  # evict, refuse


def test_memory_warning_is_logged_once_per_crossing(make_server):
    srv = make_server(env={"LMX_EVENTS_MEMORY_S": "1"}, default_model=MLX_ID, wait_ready=True)
    events = SSEReader(srv.url)
    with srv.client() as http:
        pct = http.get("/admin/memory").json()["pct"]
        assert pct > 0
        http.post("/admin/memory", json={"warning_pct": pct / 2, "critical_pct": 99})
        assert wait_for(lambda: events.of("memory_warning"), timeout=6)
        time.sleep(3)  # several more ticks above the threshold
    events.close()
    assert len(events.of("memory_warning")) == 1
    assert srv.stdout().count("WARNING:  Memory usage at ") == 1


def test_load_refused_by_its_memory_estimate(make_server):
    srv = make_server()
    with srv.client() as http:
        http.post("/admin/memory", json={"warning_pct": 0.05, "critical_pct": 0.1})
        r = http.post("/admin/models/load", json={"model": MLX_ID})
        assert r.status_code == 503 and r.json()["error"]["code"] == "insufficient-memory"
        assert "parameters x bits / 8 x 1.2" in r.json()["error"]["message"]
        assert http.get("/readyz").status_code == 503


def test_memory_counts_the_engine_process_whole_and_a_threshold_change_acts_at_once(make_server):
    """The engine's resident memory (tokenizers, Python, a prompt being read: outside MLX's
    allocator) counts in `pct`; a lowered threshold is acted on at once, not at the next sample
    (here 60 s away)."""
    import psutil

    srv = make_server(env={"LMX_EVENTS_MEMORY_S": "60"}, default_model=MLX_ID, wait_ready=True)
    events = SSEReader(srv.url)
    with srv.client() as http:
        mem = http.get("/admin/memory").json()
        assert mem["engine_rss_gb"] > mem["vram_used_gb"] > 0  # on CPU MLX's arrays are part of it
        assert mem["pct"] >= round(mem["engine_rss_gb"] * 1e9 / psutil.virtual_memory().total * 100, 2) - 0.01
        metrics = http.get("/metrics").text
        rss = [line for line in metrics.splitlines() if line.startswith("lmx_engine_resident_bytes ")]
        assert rss and float(rss[0].split()[1]) > 0
        assert wait_for(lambda: "heartbeat" in events.types() or "memory" in events.types(), timeout=30)
        http.post("/admin/memory", json={"warning_pct": mem["pct"] / 4, "critical_pct": 99})
        assert wait_for(lambda: "memory_warning" in events.types(), timeout=10), events.types()
    events.close()
