"""Hostile input on a real server (#26): bodies nested too deep, numbers too long, lone
surrogates, bad query strings and load names get a coded 4xx, are recorded, and the server
serves on; generated bodies (Hypothesis) never reach a 500 on any endpoint."""

import json
import time

import httpx
import pytest
import websockets.sync.client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import MLX_ID

DEEP = "[" * 10_000 + "]" * 10_000
HUGE_INT = "1" * 5000
SURROGATE = '"\\ud800"'
ENDPOINTS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/responses",
    "/admin/models/load",
]
SPEC_4XX = {"invalid-request", "model-not-found", "unauthorized"}


def _post_raw(http: httpx.Client, path: str, raw: str) -> httpx.Response:
    return http.post(path, content=raw.encode(), headers={"content-type": "application/json"})


def _code(r: httpx.Response) -> str:
    body = r.json()
    error = body.get("error", {})
    return error.get("code") or error.get("type", "")  # Anthropic's shape names a type


@pytest.mark.parametrize("path", ENDPOINTS)
def test_bodies_too_deep_too_long_or_not_unicode_are_refused_by_name(server, server_db, path):
    from monitoring.models import ErrorEvent

    before = ErrorEvent.objects.using(server_db(server)).count()
    with server.client() as http:
        deep = _post_raw(http, path, DEEP)
        huge = _post_raw(http, path, '{"model": "m", "max_tokens": ' + HUGE_INT + "}")
        lone = _post_raw(http, path, '{"model": ' + SURROGATE + ', "messages": []}')
        ok = http.get("/healthz")
    for r, words in (
        (deep, "nests deeper than 64"),
        (huge, "5000 characters"),
        (lone, "well-formed Unicode"),
    ):
        assert r.status_code == 400, (path, r.text)
        assert words in r.text
    assert ok.status_code == 200
    assert ErrorEvent.objects.using(server_db(server)).count() == before + 3


def test_lone_surrogates_in_texts_are_refused_where_they_are(server):
    bodies = {
        "/v1/completions": {"model": MLX_ID, "prompt": "\ud800", "max_tokens": 1},
        "/v1/embeddings": {"model": MLX_ID, "input": ["fine", "\udfff"]},
        "/v1/rerank": {"model": MLX_ID, "query": "q", "documents": ["\ud800"]},
        "/v1/chat/completions": {"model": MLX_ID, "messages": [{"role": "user", "content": "\ud83d"}]},
    }
    with server.client() as http:
        for path, body in bodies.items():
            r = _post_raw(http, path, json.dumps(body))  # ensure_ascii: the surrogate as an escape
            assert r.status_code == 400 and "well-formed Unicode" in r.json()["error"]["message"], (
                path,
                r.text,
            )


def test_a_websocket_message_too_deep_gets_an_error_and_the_socket_serves_on(server):
    url = server.url.replace("http", "ws") + "/v1/chat/stream"
    with websockets.sync.client.connect(url) as ws:
        ws.send(DEEP)
        reply = json.loads(ws.recv(timeout=30))
        assert reply["error"]["code"] == "invalid-request" and "nests deeper" in reply["error"]["message"]
        ws.send(
            json.dumps({"model": MLX_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        )
        while "done" not in (message := json.loads(ws.recv(timeout=60))):
            assert "error" not in message


def test_query_strings_and_load_names_that_used_to_crash_get_their_codes(make_server, server_db):
    from monitoring.models import ErrorEvent

    srv = make_server(env={"HF_HUB_OFFLINE": "1"})  # the hub out of reach, as on this machine
    with srv.client() as http:
        limit = http.get("/admin/errors", params={"limit": "²"})
        assert limit.status_code == 400 and "limit" in limit.json()["error"]["message"]
        for name, words in [
            ("~nosuchuser/x.gguf", "No model at"),
            ("x" * 300 + ".gguf", "No model at"),
            ("some-owner/some-model", "hub cannot be reached"),
        ]:
            r = http.post("/admin/models/load", json={"model": name})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model-not-found", (name, r.text)
            assert words in r.json()["error"]["message"]
        lone = _post_raw(http, "/v1/chat/completions", '{"model": "\\ud800x", "messages": []}')
        assert lone.status_code == 400
        assert http.get("/healthz").status_code == 200
    rows = ErrorEvent.objects.using(server_db(srv))
    assert rows.filter(code="model-not-found").count() == 3
    assert rows.filter(code="invalid-request").count() == 2


# Values of every JSON kind, with the troublesome ones often: lone surrogates, huge and negative
# numbers, deep-ish nesting, and the fields the endpoints read.
TEXT = st.text(st.characters(codec=None, categories=None), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "prompt",
        "input",
        "query",
        "documents",
        "tools",
        "tool_choice",
        "response_format",
        "temperature",
        "max_tokens",
        "stream",
        "stop",
        "logprobs",
        "system",
        "keep_alive",
        "pin",
        "ttl_s",
    ]
)
BODIES = st.dictionaries(FIELDS | TEXT, VALUES, max_size=6)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_generated_bodies_never_reach_a_500_and_every_refusal_is_recorded(server, server_db, path):
    from monitoring.models import ErrorEvent

    alias = server_db(server)
    before = ErrorEvent.objects.using(alias).count()
    refused = []

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    @given(BODIES)
    def send(body):
        if path != "/admin/models/load":
            body = {**body, "max_tokens": 1, "stream": False}  # a valid one stays cheap
        else:
            body.pop("model", None)  # never load for real: the shared server keeps its one model
        with server.client() as http:
            r = _post_raw(http, path, json.dumps(body))
        assert r.status_code < 500 or (r.status_code == 503 and _code(r) != "internal-error"), (body, r.text)
        if r.status_code >= 400:
            assert _code(r) in SPEC_4XX | {"invalid_request_error", "not_found_error"}, (body, r.text)
            refused.append(r.status_code)

    send()
    assert ErrorEvent.objects.using(alias).count() == before + len(refused)


def test_no_cross_site_writes_from_a_browser_and_one_host_header(make_server, server_db):
    from monitoring.models import ErrorEvent

    srv = make_server(env={"LMX_ALLOWED_ORIGINS": "http://localhost:3000"})
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    own = f"http://127.0.0.1:{srv.port}"
    with srv.client() as http:
        before = http.get("/admin/memory").json()
        for path, body in [
            ("/admin/memory", '{"warning_pct": 1, "critical_pct": 2}'),
            ("/admin/models/load", '{"model": "SmolLM2-135M-Instruct"}'),
            ("/v1/chat/completions", '{"model": "x", "messages": []}'),
        ]:
            r = http.post(path, content=body, headers=evil)
            assert r.status_code == 403 and r.json()["error"]["code"] == "invalid-request", (path, r.text)
            assert "LMX_ALLOWED_ORIGINS" in r.json()["error"]["message"]
        marked = http.post(
            "/admin/memory",
            json={"warning_pct": 1, "critical_pct": 2},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert marked.status_code == 403
        assert http.get("/admin/memory").json()["warning_pct"] == before["warning_pct"]  # nothing took effect
        assert (
            http.get("/v1/models", headers={"Origin": "http://evil.example"}).status_code == 200
        )  # reads stay open

        # LMX's own pages, and the origins allowed, write with JSON; a browser's text/plain is refused.
        plain = http.post(
            "/admin/memory",
            content='{"warning_pct": 80}',
            headers={"Origin": own, "Content-Type": "text/plain"},
        )
        assert plain.status_code == 415 and "application/json" in plain.json()["error"]["message"]
        for origin in (own, "http://localhost:3000"):
            ok = http.post(
                "/admin/memory", json={"warning_pct": 80, "critical_pct": 95}, headers={"Origin": origin}
            )
            assert ok.status_code == 200, ok.text
        assert (
            http.post("/admin/memory", content='{"warning_pct": 80}').status_code == 200
        )  # curl's -d: no browser

    with pytest.raises(websockets.exceptions.InvalidStatus):
        websockets.sync.client.connect(
            srv.url.replace("http", "ws") + "/v1/chat/stream", origin="http://evil.example"
        )

    import socket

    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        raw.sendall(
            b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        )
        reply = b""
        while chunk := raw.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400") and b"Host headers" in reply
    rows = ErrorEvent.objects.using(server_db(srv))
    assert rows.filter(http_status=403).count() >= 5  # three POSTs, the marked one, the handshake


def _raw(port: int, request: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    return reply


def test_limits_are_answered_at_the_http_level_with_json(server, server_db):
    from monitoring.models import ErrorEvent

    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    # A body declared far over LMX_MAX_BODY_BYTES and never sent: refused at once, not awaited.
    huge = _raw(
        server.port,
        b"POST /v1/chat/completions HTTP/1.1\r\n"
        + host
        + b"Content-Length: "
        + str(2**70).encode()
        + b"\r\n\r\n",
    )
    assert huge.startswith(b"HTTP/1.1 413") and b'"invalid-request"' in huge and b"LMX_MAX_BODY_BYTES" in huge
    headers = _raw(
        server.port, b"GET /healthz HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    )
    assert headers.startswith(b"HTTP/1.1 431") and b'"invalid-request"' in headers
    garbage = _raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400") and b"not well-formed HTTP" in garbage
    with server.client() as http:
        assert http.get("/healthz").status_code == 200
    rows = ErrorEvent.objects.using(server_db(server))
    assert rows.filter(http_status=413, endpoint="POST /v1/chat/completions").exists(), list(
        rows.values_list("http_status", "endpoint")
    )


def test_a_prompt_longer_than_any_context_is_refused_before_it_is_tokenized(server, server_db):
    """4 MB of text cannot fit 8,192 tokens whatever it tokenizes to: 400 naming its size, for a
    chat, an embedding input and a completion, and the server answers the next request."""
    from monitoring.models import ErrorEvent

    huge = "word " * 800_000
    with server.client(timeout=60) as http:
        for path, body in [
            ("/v1/chat/completions", {"model": MLX_ID, "messages": [{"role": "user", "content": huge}]}),
            ("/v1/embeddings", {"model": MLX_ID, "input": huge}),
            ("/v1/completions", {"model": MLX_ID, "prompt": ["hi", huge]}),
        ]:
            r = http.post(path, json=body)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid-request", r.text[:300]
            message = r.json()["error"]["message"]
            assert "4000" in message.replace(",", "") and "bytes" in message and "8192" in message, message
        assert "prompt[1]" in message
        ok = http.post(path, json={"model": MLX_ID, "prompt": "hi", "max_tokens": 2})
        assert ok.status_code == 200
    assert ErrorEvent.objects.using(server_db(server)).filter(message__contains="bytes").count() >= 3


def test_a_websocket_message_over_the_limit_gets_an_error_then_the_close(make_server, server_db):
    """Over LMX_MAX_BODY_BYTES a message is not read: the client gets an error message with a code
    (autobahn alone closed the socket without a word), then the close with 1009; recorded."""
    from monitoring.models import ErrorEvent

    srv = make_server(env={"LMX_MAX_BODY_BYTES": "65536"})
    url = srv.url.replace("http", "ws") + "/v1/chat/stream"
    with websockets.sync.client.connect(url, max_size=None) as ws:
        ws.send(json.dumps({"model": MLX_ID, "messages": [{"role": "user", "content": "x" * 1_500_000}]}))
        reply = json.loads(ws.recv(timeout=30))
        assert reply["error"]["code"] == "invalid-request" and reply["done"] is True
        assert "exceeds the 65536 bytes LMX reads" in reply["error"]["message"]
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    for _ in range(50):
        if (
            ErrorEvent.objects.using(server_db(srv))
            .filter(endpoint="WS /v1/chat/stream", http_status=413)
            .exists()
        ):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the refusal was not recorded")
