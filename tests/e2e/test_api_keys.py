"""Keys for the inference routes (#27 item 3): with LMX_API_KEYS set, /v1/* needs a key in each
SDK's own header and answers 401 in each API's dialect without one; probes stay open, the admin
token stays separate, a refusal is recorded without the key, and a key file rotates live."""

import json

import anthropic
import httpx
import openai
import pytest
from websockets.sync.client import connect

from tests.conftest import MLX_ID

KEYS = "sk-lmx-first,sk-lmx-second"
ADMIN = "admin-token-7"


@pytest.fixture(scope="module")
def keyed(model_store, tmp_path_factory):
    from tests.lmx_server import LMXServer

    srv = LMXServer(
        tmp_path_factory.mktemp("keyed"),
        model_store,
        default_model=MLX_ID,
        env={"LMX_API_KEYS": KEYS, "LMX_ADMIN_TOKEN": ADMIN},
    )
    srv.start(wait_ready=True)
    yield srv
    srv.stop()


def _chat(client):
    return client.chat.completions.create(
        model=MLX_ID, messages=[{"role": "user", "content": "Say hi"}], max_tokens=3
    )


def test_openai_sdk_needs_one_of_the_keys(keyed):
    wrong = openai.OpenAI(base_url=keyed.url + "/v1", api_key="sk-lmx-guess", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        _chat(wrong)
    assert refused.value.status_code == 401
    assert refused.value.body["code"] == "unauthorized" and "LMX_API_KEYS" in refused.value.body["message"]
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    anonymous = httpx.get(keyed.url + "/v1/models")  # no header at all
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    for key in KEYS.split(","):
        client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=key, max_retries=0)
        assert _chat(client).choices[0].message.content
        assert MLX_ID in [m.id for m in client.models.list()]


def test_anthropic_sdk_sends_x_api_key_and_reads_its_own_error(keyed):
    good = anthropic.Anthropic(base_url=keyed.url, api_key="sk-lmx-second", max_retries=0)
    reply = good.messages.create(model=MLX_ID, max_tokens=3, messages=[{"role": "user", "content": "Hi"}])
    assert reply.content
    bad = anthropic.Anthropic(base_url=keyed.url, api_key="sk-lmx-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as refused:
        bad.messages.count_tokens(model=MLX_ID, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.body["type"] == "error"
    assert refused.value.body["error"]["type"] == "authentication_error"


def test_probes_open_admin_token_separate_refusals_recorded_without_the_key(keyed):
    with keyed.client() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        # an API key is not the admin token
        as_key = http.get("/admin/models", headers={"Authorization": "Bearer sk-lmx-first"})
        assert as_key.status_code == 401
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert http.get("/admin/models", headers=admin).status_code == 200
        assert http.get("/v1/models", headers=admin).status_code == 200  # the operator may use the API
        refused = http.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer leaked-secret-123"},
            json={"model": MLX_ID, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        errors = http.get("/admin/errors", params={"code": "unauthorized"}, headers=admin).json()
        recorded = [e for e in errors["errors"] if e["endpoint"] == "POST /v1/chat/completions"]
        assert recorded, errors
        assert "leaked-secret-123" not in json.dumps(errors)


def test_websocket_needs_a_key_too(keyed):
    ws_url = keyed.url.replace("http", "ws") + "/v1/chat/stream"
    with connect(ws_url) as ws:
        message = json.loads(ws.recv(timeout=10))
        assert message["error"]["code"] == "unauthorized" and message["done"]
    with connect(ws_url, additional_headers={"Authorization": "Bearer sk-lmx-first"}) as ws:
        ws.send(
            json.dumps({"model": MLX_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        )
        while "done" not in (message := json.loads(ws.recv(timeout=60))):
            assert "error" not in message
        assert message["finish_reason"] in ("stop", "length")


def test_a_key_file_rotates_without_a_restart(make_server, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nsk-old\n")
    srv = make_server(env={"LMX_API_KEYS": str(keys)})
    with srv.client() as http:
        assert http.get("/v1/models", headers={"Authorization": "Bearer sk-old"}).status_code == 200
        keys.write_text("sk-new  # rotated\n")
        assert http.get("/v1/models", headers={"Authorization": "Bearer sk-old"}).status_code == 401
        assert http.get("/v1/models", headers={"Authorization": "Bearer sk-new"}).status_code == 200


def test_a_lan_server_without_keys_warns_at_start(make_server):
    srv = make_server(env={"LMX_HOST": "0.0.0.0"})
    assert httpx.get(srv.url + "/healthz").status_code == 200
    log = srv.stdout() + srv.stderr()
    assert "listens on 0.0.0.0 with neither LMX_API_KEYS nor LMX_ADMIN_TOKEN" in log
    guarded = make_server(env={"LMX_HOST": "0.0.0.0", "LMX_API_KEYS": "k"})
    assert "neither LMX_API_KEYS" not in guarded.stdout() + guarded.stderr()
