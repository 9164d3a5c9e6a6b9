"""Admin API on a real server: inventory, loads of both formats, and every error it can give."""

import re
import shutil

import httpx
import pytest

from tests.conftest import GGUF_ID, MLX_ID


def _model(models: list[dict], model_id: str) -> dict:
    return next(m for m in models if m["id"] == model_id)


def test_load_and_unload_both_formats_through_the_api(make_server, model_store, server_db):
    from monitoring.models import ModelRecord

    srv = make_server()
    with srv.client() as http:
        listing = http.get("/admin/models").json()
        gguf, mlx = _model(listing["models"], GGUF_ID), _model(listing["models"], MLX_ID)
        assert gguf["format"] == "gguf" and mlx["format"] == "mlx"
        assert gguf["size_bytes"] == (model_store / GGUF_ID).stat().st_size
        assert mlx["size_bytes"] == sum(p.stat().st_size for p in (model_store / MLX_ID).iterdir())
        assert gguf["quantization"] == "Q4_1" and mlx["quantization"] == "4bit"
        assert gguf["architecture"] == mlx["architecture"] == "llama"
        assert 130e6 < gguf["parameter_count"] < 140e6
        assert gguf["parameter_count"] == mlx["parameter_count"]
        assert not gguf["loaded"] and not mlx["loaded"] and gguf["vram_gb"] is None

        first = http.post("/admin/models/load", json={"model": GGUF_ID}).json()
        assert first["success"] and first["model"] == GGUF_ID and first["load_time_ms"] > 0
        assert first["vram_gb"] > 0.05
        state = _model(http.get("/admin/models").json()["models"], GGUF_ID)
        assert state["loaded"] and state["vram_gb"] == first["vram_gb"]

        # The other format loads beside it: both resident, nothing evicted.
        second = http.post("/admin/models/load", json={"model": MLX_ID}).json()
        assert second["model"] == MLX_ID and second["evicted"] == []
        listing = http.get("/admin/models").json()
        assert sorted(m["id"] for m in listing["models"] if m["loaded"]) == sorted([MLX_ID, GGUF_ID])
        assert listing["loaded"] == MLX_ID and listing["resident"] == [GGUF_ID, MLX_ID]

        unloaded = http.post("/admin/models/unload").json()  # no body: every resident model
        assert unloaded["success"] and unloaded["models"] == [GGUF_ID, MLX_ID]
        assert unloaded["freed_vram_gb"] > 0.1
        assert not any(m["loaded"] for m in http.get("/admin/models").json()["models"])

    alias = server_db(srv)
    records = {r.model_id: r for r in ModelRecord.objects.using(alias).all()}
    assert records[GGUF_ID].load_count == 1 and records[MLX_ID].load_count == 1
    assert records[GGUF_ID].last_load_time_ms == first["load_time_ms"]
    assert records[GGUF_ID].format == "gguf" and records[GGUF_ID].parameter_count == gguf["parameter_count"]
    assert not any(r.loaded for r in records.values())


def test_unload_hands_the_models_memory_back_to_the_system(make_server):
    """The engine's resident memory, as `top` shows it: a model's buffers freed at unload stayed in
    the C heap's arenas (the GGUF model's ~0.5 GB at float32 on this CPU), and every load and unload
    added to them (the soak's creep)."""
    srv = make_server()
    engine = srv.engine_process()
    chat = {"model": GGUF_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    loaded, unloaded = [], []
    with srv.client() as http:
        for _ in range(4):
            assert http.post("/admin/models/load", json={"model": GGUF_ID}).status_code == 200
            assert http.post("/v1/chat/completions", json=chat).status_code == 200
            loaded.append(engine.memory_info().rss)
            assert http.post("/admin/models/unload", json={"model": GGUF_ID}).status_code == 200
            unloaded.append(engine.memory_info().rss)
    # The first load also brings the code that loads and runs models, which stays.
    weights = min(loaded) - unloaded[0]
    assert weights > 300e6, (loaded, unloaded)  # float32 weights of 135M parameters
    assert max(unloaded[1:]) - unloaded[0] < 0.1 * weights, (loaded, unloaded)


def test_load_by_path_inside_the_store(make_server, model_store):
    srv = make_server()
    with srv.client() as http:
        body = http.post("/admin/models/load", json={"model": str(model_store / GGUF_ID)}).json()
        assert body["success"] and body["model"] == GGUF_ID


TRAVERSALS = [
    "../../../../etc",
    "/etc",
    "%2e%2e/%2e%2e/%2e%2e/etc",
    "%252e%252e/%252e%252e/etc",
    "..%2f..%2f..%2fetc",
    "~/",
    "SmolLM2-135M-Instruct/../../..",
]


@pytest.mark.parametrize("spelling", TRAVERSALS)
def test_paths_outside_the_model_roots_are_refused(server, server_db, spelling):
    from monitoring.models import ErrorEvent

    with server.client() as http:
        r = http.post("/admin/models/load", json={"model": spelling})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid-request"
        assert "outside the configured model roots" in r.json()["error"]["message"]
        assert http.get("/readyz").json()["model"] == MLX_ID  # nothing was lost
    assert (
        ErrorEvent.objects.using(server_db(server))
        .filter(code="invalid-request", model=spelling[:300], endpoint="POST /admin/models/load")
        .exists()
    )


def test_symlink_pointing_out_of_the_store_is_refused(make_server, model_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(model_store, store, symlinks=True)
    outside = tmp_path / "outside"
    shutil.copytree(model_store / MLX_ID, outside)
    (store / "escape").symlink_to(outside)
    srv = make_server(models_dir=store)
    with srv.client() as http:
        assert "escape" not in [m["id"] for m in http.get("/admin/models").json()["models"]]
        r = http.post("/admin/models/load", json={"model": "escape"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model-not-found"
        r = http.post("/admin/models/load", json={"model": "./escape"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid-request"
        assert http.get("/readyz").status_code == 503


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"model": ', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "empty"),
        (b'{"model": 42}', "must be a non-empty string"),
        (b'{"name": "x"}', "Missing field 'model'"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_load_bodies_get_invalid_request(server, server_db, body, fragment):
    from monitoring.models import ErrorEvent

    alias = server_db(server)
    before = ErrorEvent.objects.using(alias).filter(code="invalid-request").count()
    with server.client() as http:
        r = http.post("/admin/models/load", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid-request"
        assert fragment in r.json()["error"]["message"]
        assert http.get("/healthz").status_code == 200
    assert ErrorEvent.objects.using(alias).filter(code="invalid-request").count() == before + 1


def test_unknown_model_is_model_not_found_and_recorded(server, server_db):
    from monitoring.models import ErrorEvent

    with server.client() as http:
        r = http.post("/admin/models/load", json={"model": "no-such-model"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model-not-found"
    event = ErrorEvent.objects.using(server_db(server)).filter(code="model-not-found").latest("id")
    assert event.severity == "warning" and event.model == "no-such-model" and event.http_status == 404
    assert event.endpoint == "POST /admin/models/load"


def test_inference_without_a_model_is_no_model_loaded_with_retry_after(make_server, server_db):
    from monitoring.models import ErrorEvent

    srv = make_server(env={"LMX_JIT_LOAD": "false"})
    with srv.client() as http:
        r = http.post(
            "/v1/chat/completions", json={"model": MLX_ID, "messages": [{"role": "user", "content": "hi"}]}
        )
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "no-model-loaded"
    assert int(r.headers["retry-after"]) > 0
    event = ErrorEvent.objects.using(server_db(srv)).get(code="no-model-loaded")
    assert event.severity == "warning" and event.http_status == 503


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("truncated.gguf", "truncate", "the file is truncated"),
        ("garbage.gguf", b"this is not a model at all" * 100, "not a GGUF file"),
    ],
)
def test_corrupt_gguf_gives_a_clear_error_and_the_server_stays_up(
    make_server, model_store, tmp_path, server_db, name, content, fragment
):
    from monitoring.models import ErrorEvent

    store = tmp_path / "store"
    store.mkdir()
    data = (model_store / GGUF_ID).read_bytes()
    (store / name).write_bytes(data[: len(data) // 3] if content == "truncate" else content)
    srv = make_server(models_dir=store)
    with srv.client() as http:
        r = http.post("/admin/models/load", json={"model": name})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid-request"
        assert fragment in r.json()["error"]["message"] and name in r.json()["error"]["message"]
        assert not re.search(r"0x[0-9a-f]{6,}", r.text)
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").status_code == 503
    assert ErrorEvent.objects.using(server_db(srv)).filter(code="invalid-request", model=name).exists()


def test_admin_token_is_enforced_when_set_and_probes_stay_open(make_server, server_db):
    from monitoring.models import ErrorEvent

    srv = make_server(env={"LMX_ADMIN_TOKEN": "s3cret-token"})
    with srv.client() as http:
        for method, path in [
            ("GET", "/admin/models"),
            ("POST", "/admin/models/load"),
            ("POST", "/admin/models/unload"),
        ]:
            r = http.request(method, path, json={"model": MLX_ID})
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "unauthorized"
            wrong = http.request(
                method, path, json={"model": MLX_ID}, headers={"Authorization": "Bearer wrong"}
            )
            assert wrong.status_code == 401
        ok = http.get("/admin/models", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and "models" in ok.json()
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 503
    rows = ErrorEvent.objects.using(server_db(srv)).filter(code="unauthorized")
    assert rows.count() == 6
    assert all("s3cret" not in e.message for e in rows)


def test_foreign_host_header_is_refused(server, server_db):
    from monitoring.models import ErrorEvent

    for host in ["evil.example", "attacker.com:1234"]:
        r = httpx.get(server.url + "/admin/models", headers={"Host": host})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "invalid-request"
    r = httpx.get(server.url + "/healthz", headers={"Host": f"localhost:{server.port}"})
    assert r.status_code == 200
    assert ErrorEvent.objects.using(server_db(server)).filter(message__contains="evil.example").exists()


def test_a_failed_load_keeps_the_model_that_was_loaded(make_server, model_store, tmp_path, server_db):
    """Broken models on disk: a corrupt weights header (refused before anything is loaded) and
    weights that do not match their config (fails inside the load): the resident model serves on,
    untouched (a load never replaces it)."""
    from monitoring.models import ErrorEvent

    extra = tmp_path / "extra"
    corrupt = extra / "Corrupt-Weights"
    corrupt.mkdir(parents=True)
    shutil.copyfile(model_store / MLX_ID / "config.json", corrupt / "config.json")
    (corrupt / "model.safetensors").write_bytes(b"\xff" * 64)
    mismatched = extra / "Mismatched-Config"
    shutil.copytree(model_store / MLX_ID, mismatched)
    config = (
        (mismatched / "config.json").read_text().replace('"num_hidden_layers": 30', '"num_hidden_layers": 31')
    )
    (mismatched / "config.json").write_text(config)

    srv = make_server(default_model=MLX_ID, wait_ready=True, env={"LMX_EXTRA_MODEL_DIRS": str(extra)})
    with srv.client() as http:
        for name, fragment in [
            ("Corrupt-Weights", "unreadable safetensors header"),
            ("Mismatched-Config", "Missing 9 parameters"),
        ]:
            r = http.post("/admin/models/load", json={"model": name})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "invalid-request"
            assert name in r.json()["error"]["message"] and fragment in r.json()["error"]["message"]
            assert http.get("/readyz").json()["model"] == MLX_ID
            listed = http.get("/admin/models").json()
            assert listed["loaded"] == MLX_ID
            assert _model(listed["models"], name)["state"] == "idle"
        reply = http.post(
            "/v1/chat/completions",
            json={"model": MLX_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
        )
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
    assert "Model unloaded" not in srv.stdout()  # nothing was unloaded, nothing reloaded
    assert srv.stdout().count(f"Model loaded: {MLX_ID} (") == 1
    rows = ErrorEvent.objects.using(server_db(srv)).filter(code="invalid-request")
    assert {"Corrupt-Weights", "Mismatched-Config"} <= set(rows.values_list("model", flat=True))


def test_an_alias_given_at_load_names_the_model_in_requests_and_in_the_list(server):
    with server.client() as http:
        loaded = http.post("/admin/models/load", json={"model": MLX_ID, "alias": "gpt-4o-mini"})
        assert loaded.status_code == 200 and loaded.json()["model"] == MLX_ID
        chat = http.post(
            "/v1/chat/completions",
            json={"model": "GPT-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
        )
        assert chat.status_code == 200 and chat.json()["model"] == MLX_ID
        listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
        assert listed["gpt-4o-mini"]["alias_of"] == MLX_ID and "alias_of" not in listed[MLX_ID]
        bad = http.post("/admin/models/load", json={"model": MLX_ID, "alias": "no spaces"})
        assert bad.status_code == 400 and "'alias'" in bad.json()["error"]["message"]
