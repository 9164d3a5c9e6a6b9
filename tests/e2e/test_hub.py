"""Hub ids go through huggingface_hub (against a local stand-in of the hub API)."""

import pytest

from tests.conftest import MLX_ID
from tests.fake_hub import FakeHub

REPO = "lmx-test/SmolLM2-135M-Instruct-mirror"


@pytest.fixture
def hub():
    fake = FakeHub(
        {
            "mlx-community/Giant-Model-4bit": [
                {"rfilename": "config.json", "size": 1200},
                {"rfilename": "model-00001-of-00002.safetensors", "size": 6 * 10**15},
                {"rfilename": "model-00002-of-00002.safetensors", "size": 6 * 10**15},
                {"rfilename": "README.md", "size": 10},
            ],
        }
    )
    yield fake
    fake.close()


def test_hub_model_larger_than_free_disk_is_storage_full(make_server, hub, server_db):
    from monitoring.models import ErrorEvent

    srv = make_server(env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"})
    with srv.client() as http:
        r = http.post("/admin/models/load", json={"model": "mlx-community/Giant-Model-4bit"})
        assert r.status_code == 507
        error = r.json()["error"]
        assert error["code"] == "storage-full"
        assert "12000000.0 GB" in error["message"] and "free" in error["message"]
        assert http.get("/healthz").status_code == 200
    assert any(p.startswith("GET /api/models/mlx-community/Giant-Model-4bit") for p in hub.requests)
    event = ErrorEvent.objects.using(server_db(srv)).get(code="storage-full")
    assert event.severity == "error" and event.http_status == 507
    assert not (srv.workdir / "hf-cache" / "models--mlx-community--Giant-Model-4bit").exists()


def test_unknown_hub_repo_is_model_not_found(make_server, hub):
    srv = make_server(env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"})
    with srv.client() as http:
        r = http.post("/admin/models/load", json={"model": "someone/does-not-exist"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model-not-found"
    assert "not a model on the Hugging Face hub" in r.json()["error"]["message"]


def test_hub_model_downloads_loads_and_answers(make_server, model_store, tmp_path):
    """The real download path: huggingface_hub lists the repo, fetches the files LMX asks for into
    the server's cache, and the model loads and answers like a local one."""
    source = model_store / MLX_ID
    files = {p.name: p for p in source.iterdir() if p.is_file()}
    extra = tmp_path / "original-weights.bin"  # a file LMX does not ask for
    extra.write_bytes(b"\0" * 1024)
    hub = FakeHub({}, files={REPO: {**files, extra.name: extra}})
    try:
        srv = make_server(env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"})
        with srv.client() as http:
            r = http.post("/admin/models/load", json={"model": REPO})
            assert r.status_code == 200, r.text
            assert r.json()["success"] and r.json()["model"] == REPO
            answer = http.post(
                "/v1/chat/completions",
                json={
                    "model": REPO,
                    "messages": [{"role": "user", "content": "What is the capital of France?"}],
                    "temperature": 0,
                    "max_tokens": 20,
                },
            ).json()
            assert "Paris" in answer["choices"][0]["message"]["content"]
            listed = [m for m in http.get("/admin/models").json()["models"] if m["id"] == REPO]
            assert len(listed) == 1 and listed[0]["loaded"]
    finally:
        hub.close()
    snapshot = srv.workdir / "hf-cache" / f"models--{REPO.replace('/', '--')}" / "snapshots"
    fetched = {p.name for p in snapshot.rglob("*") if p.is_file()}
    assert fetched == set(files)  # every model file, and not the one LMX did not ask for
    assert any(r.startswith(f"GET /{REPO}/resolve/") for r in hub.requests)
