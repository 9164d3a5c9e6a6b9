"""Hub ids go through huggingface_hub (against a local stand-in of the hub API)."""

import pytest

from tests.fake_hub import FakeHub


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
    assert any(p.startswith("/api/models/mlx-community/Giant-Model-4bit") for p in hub.requests)
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
