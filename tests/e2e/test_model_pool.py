"""Several models resident on a real server: interleaved streams, LRU eviction by count and by
memory, pinning, TTL and keep_alive, JIT loading, per-load options, unloading one model."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.conftest import GGUF_ID, MLX_ID, link_model, wait_for
from tests.e2e.test_monitoring import SSEReader

COPY_ID = "SmolLM2-copy-Q4_1.gguf"


def _client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


def _greedy(client: openai.OpenAI, model: str, **extra) -> str:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name three rivers of Europe."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        extra_body=extra or None,
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


@pytest.fixture
def three_models(model_store: Path, tmp_path: Path) -> Path:
    """The MLX folder, its GGUF and a second GGUF, as hard links (no copies) in a store of their own."""
    store = tmp_path / "store"
    link_model(model_store / MLX_ID, store / MLX_ID)
    link_model(model_store / GGUF_ID, store / GGUF_ID)
    link_model(model_store / GGUF_ID, store / COPY_ID)
    return store


def _resident(http) -> list[str]:
    return http.get("/admin/models").json()["resident"]


@pytest.mark.parametrize("threads", ["off", "on"])
def test_two_resident_models_serve_concurrent_streams_with_the_tokens_each_gives_alone(make_server, threads):
    """`on`: the second model steps on its own thread beside the first (LMX_MODEL_THREADS, on by
    default with CUDA only)."""
    srv = make_server(default_model=MLX_ID, wait_ready=True, env={"LMX_MODEL_THREADS": threads})
    client = _client(srv)
    with srv.client() as http:
        loaded = http.post("/admin/models/load", json={"model": GGUF_ID}).json()
        assert loaded["evicted"] == [] and loaded["already_loaded"] is False
    alone = {model: _greedy(client, model) for model in (MLX_ID, GGUF_ID)}
    assert all(alone.values())
    models = [MLX_ID, GGUF_ID, MLX_ID, GGUF_ID]  # two streams each: each model batches its own
    with ThreadPoolExecutor(len(models)) as pool:
        together = list(pool.map(lambda m: _greedy(client, m), models))
    assert together == [alone[m] for m in models]
    listed = {m.id: m.model_extra for m in client.models.list().data}
    assert listed[MLX_ID]["loaded"] and listed[GGUF_ID]["loaded"]
    assert _greedy(client, GGUF_ID) == alone[GGUF_ID]
    own_thread = f"{GGUF_ID} steps on its own thread"
    assert (own_thread in srv.stdout() + srv.stderr()) == (threads == "on")
    with srv.client() as http:
        ready = http.get("/readyz").json()
        assert ready["ready"] and sorted(ready["models"]) == sorted([MLX_ID, GGUF_ID])
        metrics = http.get("/metrics").text
        for model, requests in ((MLX_ID, 3), (GGUF_ID, 4)):  # alone, twice together, (once more)
            assert f'lmx_model_loaded{{model="{model}"}} 1.0' in metrics
            assert f'lmx_model_requests_total{{model="{model}"}} {requests}.0' in metrics
            memory = [
                line
                for line in metrics.splitlines()
                if line.startswith(f'lmx_model_memory_bytes{{model="{model}"}}')
            ]
            assert memory and float(memory[0].split()[-1]) > 50e6
        assert ready["model"] == GGUF_ID  # the most recently used
        one = http.post("/admin/models/unload", json={"model": GGUF_ID}).json()
        assert one["success"] and one["models"] == [GGUF_ID] and one["freed_vram_gb"] > 0.05
        assert _resident(http) == [MLX_ID]
        gone = http.post("/admin/models/unload", json={"model": GGUF_ID})
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "model-not-found"
        assert f"resident: {MLX_ID}" in gone.json()["error"]["message"]
    assert _greedy(client, MLX_ID) == alone[MLX_ID]


def test_the_least_recently_used_idle_model_is_evicted_and_a_pinned_one_never(make_server, three_models):
    srv = make_server(models_dir=three_models, env={"LMX_MAX_MODELS": "2"})
    events = SSEReader(srv.url)
    client = _client(srv)
    try:
        with srv.client() as http:
            assert http.post("/admin/models/load", json={"model": MLX_ID}).status_code == 200
            assert http.post("/admin/models/load", json={"model": GGUF_ID}).status_code == 200
            _greedy(client, MLX_ID)  # the MLX model is now the more recently used
            third = http.post("/admin/models/load", json={"model": COPY_ID}).json()
            assert [(e["model"], e["reason"]) for e in third["evicted"]] == [(GGUF_ID, "evicted")]
            assert sorted(_resident(http)) == sorted([MLX_ID, COPY_ID])
            assert wait_for(lambda: [e for e in events.of("model_event") if e["action"] == "evicted"])
            evicted = [e for e in events.of("model_event") if e["action"] == "evicted"]
            assert evicted[0]["model"] == GGUF_ID and evicted[0]["vram_gb"] > 0.05

            pinned = http.post("/admin/models/load", json={"model": MLX_ID, "pin": True}).json()
            assert pinned["already_loaded"] and pinned["pinned"]
            _greedy(client, COPY_ID)  # the pinned model is the least recently used now, and stays
            back = http.post("/admin/models/load", json={"model": GGUF_ID}).json()
            assert [e["model"] for e in back["evicted"]] == [COPY_ID]

            assert http.post("/admin/models/load", json={"model": GGUF_ID, "pin": True}).status_code == 200
            refused = http.post("/admin/models/load", json={"model": COPY_ID})
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert error["code"] == "insufficient-memory"
            assert "LMX_MAX_MODELS=2" in error["message"] and f"{MLX_ID} (" in error["message"]
            assert "pinned" in error["message"]
            assert sorted(_resident(http)) == sorted([MLX_ID, GGUF_ID])
            state = {m["id"]: m for m in http.get("/admin/models").json()["models"]}
            assert state[MLX_ID]["pinned"] and state[GGUF_ID]["pinned"] and not state[COPY_ID]["loaded"]
    finally:
        events.close()


def test_a_load_over_the_memory_budget_evicts_the_least_recently_used(make_server, three_models):
    """The budget is the warning threshold by default: set it between what two models use and
    what a third would add, and the third's load evicts the least recently used one."""
    srv = make_server(models_dir=three_models)
    client = _client(srv)
    with srv.client() as http:
        assert http.post("/admin/models/load", json={"model": GGUF_ID}).status_code == 200
        assert http.post("/admin/models/load", json={"model": MLX_ID}).status_code == 200
        _greedy(client, GGUF_ID)
        estimate = {m["id"]: m for m in http.get("/admin/models").json()["models"]}[COPY_ID]["estimate_gb"]
        mem = http.get("/admin/memory").json()
        budget_pct = (mem["vram_used_gb"] + estimate / 2) / mem["vram_total_gb"] * 100
        assert (
            http.post("/admin/memory", json={"warning_pct": budget_pct, "critical_pct": 99}).status_code
            == 200
        )
        third = http.post("/admin/models/load", json={"model": COPY_ID}).json()
        assert [e["model"] for e in third["evicted"]] == [MLX_ID]  # the least recently used, only it
        assert sorted(_resident(http)) == sorted([GGUF_ID, COPY_ID])


def test_jit_loads_on_request_and_ttl_and_keep_alive_unload_idle_models(make_server):
    srv = make_server()  # no model at start; JIT loading is on by default
    events = SSEReader(srv.url)
    client = _client(srv)
    try:
        with ThreadPoolExecutor(3) as pool:  # three requests wait behind one load
            texts = list(pool.map(lambda _: _greedy(client, MLX_ID), range(3)))
        assert texts[0] and texts == [texts[0]] * 3
        loads = [e for e in events.of("model_event") if e["action"] == "loaded"]
        assert [e["model"] for e in loads] == [MLX_ID]

        # keep_alive 0: the model goes once the request ends.
        assert _greedy(client, MLX_ID, keep_alive=0) == texts[0]
        assert wait_for(lambda: [e for e in events.of("model_event") if e["action"] == "expired"], timeout=10)
        with srv.client() as http:
            assert _resident(http) == []
            assert http.get("/readyz").status_code == 503

            # A TTL at load: idle past it, unloaded; a request before it would have reset it.
            assert http.post("/admin/models/load", json={"model": GGUF_ID, "ttl_s": "1s"}).status_code == 200
            state = {m["id"]: m for m in http.get("/admin/models").json()["models"]}[GGUF_ID]
            assert state["ttl_s"] == 1 and 0 <= state["ttl_left_s"] <= 1
            expired = lambda: [e for e in events.of("model_event") if e["action"] == "expired"]  # noqa: E731
            assert wait_for(lambda: len(expired()) == 2, timeout=10)
            assert expired()[1]["model"] == GGUF_ID and _resident(http) == []

            bad = http.post(
                "/v1/chat/completions",
                json={
                    "model": MLX_ID,
                    "messages": [{"role": "user", "content": "hi"}],
                    "keep_alive": "5 minutes",
                },
            )
            assert bad.status_code == 400 and "keep_alive" in bad.json()["error"]["message"]
    finally:
        events.close()


def test_per_load_context_length_refuses_longer_prompts(make_server):
    srv = make_server()
    with srv.client() as http:
        loaded = http.post("/admin/models/load", json={"model": MLX_ID, "context_length": 64}).json()
        assert loaded["context_length"] == 64
        state = {m["id"]: m for m in http.get("/admin/models").json()["models"]}[MLX_ID]
        assert state["context_length"] == 64 and state["model_context_length"] == 8192
        long = " ".join(["word"] * 100)
        r = http.post(
            "/v1/chat/completions", json={"model": MLX_ID, "messages": [{"role": "user", "content": long}]}
        )
        assert r.status_code == 400 and "context length of 64" in r.json()["error"]["message"]
        short = http.post(
            "/v1/chat/completions",
            json={"model": MLX_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
        assert short.status_code == 200

        busy_options = http.post("/admin/models/load", json={"model": MLX_ID, "context_length": 128}).json()
        assert busy_options["context_length"] == 128  # idle: reloaded with the new options
        assert [e["model"] for e in busy_options["evicted"]] == [MLX_ID]

        too_long = http.post("/admin/models/load", json={"model": GGUF_ID, "context_length": 10**6})
        assert too_long.status_code == 400 and "exceeds" in too_long.json()["error"]["message"]
        assert _resident(http) == [MLX_ID]


def _rivers(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name three rivers of Europe."}],
        max_tokens=12,
        temperature=0,
    )
    return reply.choices[0].message.content


def test_kv_bits_keeps_the_kv_cache_quantized_in_less_memory(make_server, three_models):
    """The same model loaded twice, once with kv_bits 8: both answer, concurrent streams batch in
    the quantized cache, and the keys and values it holds (read from MLX) take fewer bytes."""
    srv = make_server(models_dir=three_models)
    client = _client(srv)
    with srv.client() as http:
        assert http.post("/admin/models/load", json={"model": GGUF_ID}).status_code == 200
        quantized = http.post("/admin/models/load", json={"model": COPY_ID, "kv_bits": 8})
        assert quantized.status_code == 200
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda m: _rivers(client, m), [GGUF_ID, COPY_ID, COPY_ID]))
        assert all("Danube" in a for a in answers), answers
        state = {m["id"]: m for m in http.get("/admin/models").json()["models"]}
        assert state[COPY_ID]["kv_bits"] == 8 and state[GGUF_ID]["kv_bits"] is None
        plain, eight = state[GGUF_ID]["kv_cache_bytes"], state[COPY_ID]["kv_cache_bytes"]
        assert plain > 0 and 0 < eight < 0.7 * plain, (plain, eight)

        bad = http.post("/admin/models/load", json={"model": MLX_ID, "kv_bits": 3})
        assert bad.status_code == 400 and "kv_bits" in bad.json()["error"]["message"]
        assert sorted(_resident(http)) == sorted([GGUF_ID, COPY_ID])
