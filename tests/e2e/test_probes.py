"""Probes on a real Daphne server: before any load, after a load, after an unload."""

from tests.conftest import MLX_ID


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
