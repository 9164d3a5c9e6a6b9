"""Probes on a real Daphne server: before any load, after a load, after an unload."""

from concurrent.futures import ThreadPoolExecutor

from tests.conftest import GGUF_ID, MLX_ID, wait_for


def test_probes_follow_the_model_lifecycle(make_server):
    srv = make_server()  # LMX_DEFAULT_MODEL empty: starts with no model
    with srv.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "error": "no-model-loaded"}

        loaded = http.post("/admin/models/load", json={"model": MLX_ID})
        assert loaded.status_code == 200, loaded.text
        ready = http.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["ready"] is True and body["model"] == MLX_ID
        assert body["vram_gb"] > 0.05

        assert http.post("/admin/models/unload").json()["success"] is True
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"] == "no-model-loaded"
        assert http.get("/healthz").status_code == 200

    out = srv.stdout()
    assert f"INFO:     LMX starting on 127.0.0.1:{srv.port}\n" in out
    assert f"INFO:     Model loaded: {MLX_ID} (" in out
    assert "INFO:     Model unloaded, freed " in out


def test_default_model_is_loaded_at_start(server):
    with server.client() as http:
        body = http.get("/readyz").json()
    assert body["ready"] is True and body["model"] == MLX_ID


def test_a_killed_engine_process_fails_its_request_and_the_server_comes_back(make_server, server_db):
    from monitoring.models import ErrorEvent, ModelRecord

    srv = make_server(default_model=MLX_ID, wait_ready=True)
    engine = srv.engine_process()
    with srv.client() as http, ThreadPoolExecutor(1) as pool:
        body = {"model": MLX_ID, "messages": [{"role": "user", "content": "Write a long story."}]}
        running = pool.submit(http.post, "/v1/chat/completions", json={**body, "max_tokens": 400})
        assert wait_for(lambda: http.get("/metrics").text.count("lmx_active_requests 1.0"), timeout=30)
        engine.kill()
        failed = running.result(timeout=60)
        assert http.get("/healthz").status_code == 200  # the server itself never stopped
        assert wait_for(lambda: http.get("/readyz").status_code == 200, timeout=120)
        answer = http.post(
            "/v1/chat/completions",
            json={
                **body,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 12,
                "temperature": 0,
            },
        )
    assert failed.status_code == 500
    assert "engine process stopped" in failed.json()["error"]["message"]
    assert failed.json()["error"]["code"] == "internal-error"
    assert "Paris" in answer.json()["choices"][0]["message"]["content"]
    assert srv.engine_process().pid != engine.pid
    assert ErrorEvent.objects.using(server_db(srv)).filter(code="internal-error").exists()
    out = srv.stdout()
    assert "ERROR:    The engine process stopped (exit code -9); its requests failed\n" in out
    assert out.count(f"INFO:     Model loaded: {MLX_ID} (") == 2
    record = ModelRecord.objects.using(server_db(srv)).get(model_id=MLX_ID)
    assert record.loaded and record.load_count == 2  # the inventory counts the reload


def test_an_engine_killed_during_a_load_gives_the_resident_model_back(make_server):
    srv = make_server(default_model=MLX_ID, wait_ready=True)
    engine = srv.engine_process()

    def state(http) -> dict:
        return {m["id"]: m for m in http.get("/admin/models").json()["models"]}

    with srv.client() as http, ThreadPoolExecutor(1) as pool:
        loading = pool.submit(http.post, "/admin/models/load", json={"model": GGUF_ID})
        assert wait_for(lambda: state(http)[GGUF_ID]["state"] == "loading", timeout=30, interval=0.02)
        engine.kill()
        failed = loading.result(timeout=60)
        assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal-error"
        assert f"Loading {GGUF_ID} crashed the engine process" in failed.json()["error"]["message"]
        assert wait_for(lambda: http.get("/readyz").status_code == 200, timeout=120)
        assert http.get("/readyz").json()["models"] == [MLX_ID]  # the resident model is back, not the other
        assert state(http)[GGUF_ID]["crashed_engine"] is True
        jit = http.post(
            "/v1/chat/completions", json={"model": GGUF_ID, "messages": [{"role": "user", "content": "Hi"}]}
        )
        assert jit.status_code == 400 and "crashed the engine process when it was last loaded" in jit.text
        again = http.post("/admin/models/load", json={"model": GGUF_ID})  # the operator asks: it is tried
        assert again.status_code == 200, again.text
        assert state(http)[GGUF_ID]["crashed_engine"] is False
    assert "ERROR:    Loading SmolLM2-135M-Instruct-Q4_1.gguf crashed the engine process" in srv.stdout()
