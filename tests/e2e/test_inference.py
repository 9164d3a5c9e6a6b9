"""OpenAI-compatible inference on the real default model through a real Daphne server."""

import itertools
import json
import re
import threading
import time

import httpx
import pytest

from tests.conftest import GGUF_ID, MLX_ID, wait_for

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _body(content: str | None = None, **fields) -> dict:
    """A chat-completions body for the default model: QUESTION, or one user message."""
    messages = QUESTION if content is None else [{"role": "user", "content": content}]
    return {"model": MLX_ID, "messages": messages, **fields}


def _chat(http, **fields):
    return http.post("/v1/chat/completions", json=_body(**fields))


def _stream(http, path: str, body: dict) -> list[dict]:
    chunks = []
    with http.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        for line in r.iter_lines():
            if line.startswith("data: "):
                payload = line[len("data: ") :]
                chunks.append("[DONE]" if payload == "[DONE]" else json.loads(payload))
    return chunks


def test_greedy_answer_names_paris_with_exact_usage(server):
    with server.client() as http:
        body = _chat(http, temperature=0, max_tokens=20).json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert "Paris" in choice["message"]["content"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] == 37  # SmolLM2's template with its default system prompt
    assert 0 < usage["completion_tokens"] <= 20
    log = server.stdout()
    assert re.search(rf"INFO:     Completion request model={MLX_ID} tokens=\d+ speed=[\d.]+tok/s\n", log)


def test_stream_reassembles_to_the_non_streamed_text_for_the_same_seed(server):
    body = {
        "model": MLX_ID,
        "messages": [{"role": "user", "content": "Write one sentence about cats."}],
        "temperature": 0.9,
        "seed": 1234,
        "max_tokens": 16,
    }
    with server.client() as http:
        full = http.post("/v1/chat/completions", json=body).json()
        again = http.post("/v1/chat/completions", json=body).json()
        chunks = _stream(
            http, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
        )
    assert chunks[-1] == "[DONE]"
    usage_chunk = chunks[-2]
    assert (
        usage_chunk["choices"] == []
        and usage_chunk["usage"]["completion_tokens"] == full["usage"]["completion_tokens"]
    )
    last = chunks[-3]
    assert last["choices"][0]["finish_reason"] == full["choices"][0]["finish_reason"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-2])
    assert text == full["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])


def test_length_finish_and_completions_endpoint(server):
    with server.client() as http:
        r = http.post(
            "/v1/completions",
            json={"model": MLX_ID, "prompt": "Once upon a time", "max_tokens": 3, "temperature": 0},
        )
        chunks = _stream(
            http,
            "/v1/completions",
            {
                "model": MLX_ID,
                "prompt": "Once upon a time",
                "max_tokens": 3,
                "temperature": 0,
                "stream": True,
            },
        )
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == body["choices"][0]["text"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_stop_string_never_leaks_into_the_output(server):
    with server.client() as http:
        plain = _chat(http, temperature=0, max_tokens=20).json()["choices"][0]["message"]["content"]
        assert "Paris" in plain
        stopped = _chat(http, temperature=0, max_tokens=20, stop=["aris"]).json()
        chunks = _stream(
            http,
            "/v1/chat/completions",
            {"model": MLX_ID, "messages": QUESTION, "temperature": 0, "stop": "ris", "stream": True},
        )
    text = stopped["choices"][0]["message"]["content"]
    assert text == plain[: plain.index("aris")] and stopped["choices"][0]["finish_reason"] == "stop"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
    assert streamed == plain[: plain.index("ris")]


def test_eight_concurrent_streams_share_the_batch(server):
    arrivals: list[tuple[float, int]] = []
    finishes: dict[int, str] = {}
    lock = threading.Lock()

    def run(i: int):
        body = {
            "model": MLX_ID,
            "messages": [{"role": "user", "content": f"Count from {i} to {i + 30}."}],
            "temperature": 0,
            "max_tokens": 24,
            "stream": True,
        }
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=300) as r:
            for line in r.iter_lines():  # timestamps taken as each chunk arrives
                if not line.startswith("data: {"):
                    continue
                choice = json.loads(line[6:])["choices"][0]
                with lock:
                    if choice["delta"].get("content"):
                        arrivals.append((time.monotonic(), i))
                    if choice["finish_reason"]:
                        finishes[i] = choice["finish_reason"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(finishes) == 8
    arrivals.sort()
    spans = {
        i: (min(t for t, j in arrivals if j == i), max(t for t, j in arrivals if j == i)) for i in range(8)
    }
    # Every stream got its first token before any stream got its last one: all eight decoded together.
    assert max(first for first, _ in spans.values()) < min(last for _, last in spans.values())
    switches = sum(1 for a, b in itertools.pairwise(arrivals) if a[1] != b[1])
    assert switches >= 8 * 10  # tokens of different requests interleave, step after step


def test_second_chat_turn_reuses_the_cached_prefix(server):
    turn1 = [{"role": "user", "content": "My name is Ada and I like tea. Please remember it."}]
    with server.client() as http:
        first = http.post(
            "/v1/chat/completions",
            json={"model": MLX_ID, "messages": turn1, "temperature": 0, "max_tokens": 12},
        ).json()
        reply = first["choices"][0]["message"]["content"]
        turn2 = [
            *turn1,
            {"role": "assistant", "content": reply},
            {"role": "user", "content": "What is my name?"},
        ]
        second = http.post(
            "/v1/chat/completions",
            json={"model": MLX_ID, "messages": turn2, "temperature": 0, "max_tokens": 8},
        ).json()
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"]
    assert cached < second["usage"]["prompt_tokens"]


def test_v1_models_lists_models_in_openai_format(server):
    with server.client() as http:
        body = http.get("/v1/models").json()
    assert body["object"] == "list"
    ids = {m["id"]: m for m in body["data"]}
    assert ids[MLX_ID]["object"] == "model" and ids[MLX_ID]["loaded"] is True
    assert ids[GGUF_ID]["loaded"] is False


BAD_CHAT = [
    ({"messages": QUESTION}, "Missing field 'model'"),
    ({"model": MLX_ID}, "Missing field 'messages'"),
    ({"model": MLX_ID, "messages": []}, "non-empty list"),
    ({"model": MLX_ID, "messages": [{"role": "wizard", "content": "hi"}]}, "role 'wizard' is unknown"),
    ({"model": MLX_ID, "messages": [{"role": "user", "content": 42}]}, "must be a string"),
    ({"model": MLX_ID, "messages": QUESTION, "n": 2}, "Only n=1"),
    ({"model": MLX_ID, "messages": QUESTION, "max_tokens": 10_000_000}, "between 1 and 1000000"),
    ({"model": MLX_ID, "messages": QUESTION, "max_tokens": 100_000}, "exceeds the model's context length"),
    ({"model": MLX_ID, "messages": QUESTION, "max_tokens": "ten"}, "must be an integer"),
    ({"model": MLX_ID, "messages": QUESTION, "temperature": 9}, "between 0 and 2"),
    ({"model": MLX_ID, "messages": QUESTION, "stop": [1, 2]}, "'stop' must be a string"),
    ({"model": MLX_ID, "messages": QUESTION, "stream": "yes"}, "'stream' must be true or false"),
    ({"model": MLX_ID, "messages": "hello"}, "non-empty list"),
    ({"model": MLX_ID, "messages": QUESTION, "logit_bias": {"999999": 5}}, "outside the vocabulary"),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_CHAT)
def test_bad_chat_bodies_get_invalid_request_and_are_recorded(server, server_db, body, fragment):
    from monitoring.models import ErrorEvent

    alias = server_db(server)
    before = ErrorEvent.objects.using(alias).filter(endpoint="POST /v1/chat/completions").count()
    with server.client() as http:
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid-request"
        assert fragment in r.json()["error"]["message"]
        assert http.get("/readyz").status_code == 200
    assert ErrorEvent.objects.using(alias).filter(endpoint="POST /v1/chat/completions").count() == before + 1


def test_prompt_longer_than_the_context_says_by_how_much(server):
    with server.client() as http:
        r = http.post("/v1/completions", json={"model": MLX_ID, "prompt": "hello " * 9000, "max_tokens": 1})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    match = re.search(r"The prompt is (\d+) tokens, (\d+) over the model's context length of 8192", message)
    assert match and int(match.group(1)) - 8192 + 1 == int(match.group(2))


def test_oversized_body_is_refused_without_harm(server):
    with server.client() as http:
        r = http.post("/v1/chat/completions", content=b'{"x": "' + b"a" * (5 * 1024 * 1024) + b'"}')
        assert r.status_code == 413 and r.json()["error"]["code"] == "invalid-request"
        assert _chat(http, temperature=0, max_tokens=2).status_code == 200


def test_model_names_unknown_and_not_loaded(server, server_db):
    from monitoring.models import ErrorEvent

    with server.client() as http:
        unknown = http.post("/v1/chat/completions", json={"model": "gpt-4", "messages": QUESTION})
        idle = http.post("/v1/chat/completions", json={"model": GGUF_ID, "messages": QUESTION})
        alias_ok = http.post(
            "/v1/chat/completions", json={"model": MLX_ID.lower(), "messages": QUESTION, "max_tokens": 1}
        )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model-not-found"
    assert idle.status_code == 503 and idle.json()["error"]["code"] == "no-model-loaded"
    assert "Retry-After" in idle.headers
    assert alias_ok.status_code == 200
    alias = server_db(server)
    assert ErrorEvent.objects.using(alias).filter(code="model-not-found", model="gpt-4").exists()
    assert ErrorEvent.objects.using(alias).filter(code="no-model-loaded", model=GGUF_ID).exists()


def test_disconnected_stream_frees_its_slot(make_server):
    srv = make_server(
        env={"LMX_MAX_CONCURRENT": "1", "LMX_MAX_QUEUE": "0"}, default_model=MLX_ID, wait_ready=True
    )
    long_body = {
        "model": MLX_ID,
        "messages": [{"role": "user", "content": "Tell a very long story."}],
        "max_tokens": 2000,
        "stream": True,
        "temperature": 0,
    }
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        with http.stream("POST", "/v1/chat/completions", json=long_body) as r:
            lines = r.iter_lines()
            seen = 0
            for line in lines:
                if '"content": "' in line and '"content": ""' not in line:
                    seen += 1
                if seen == 3:
                    break
            busy = httpx.post(
                srv.url + "/v1/chat/completions",
                json={"model": MLX_ID, "messages": QUESTION, "max_tokens": 1},
            )
            assert busy.status_code == 503 and busy.json()["error"]["code"] == "server-busy"
            assert "Retry-After" in busy.headers
        # the client is gone: its slot must come free at once
        started = time.monotonic()
        ok = wait_for(
            lambda: (
                httpx.post(
                    srv.url + "/v1/chat/completions",
                    json={"model": MLX_ID, "messages": QUESTION, "max_tokens": 2},
                    timeout=60,
                ).status_code
                == 200
            ),
            timeout=10,
            interval=0.05,
        )
        assert ok, "the slot of the disconnected stream was not freed"
        assert time.monotonic() - started < 10


def test_request_timeout_gives_lmx_timeout(make_server, server_db):
    from monitoring.models import ErrorEvent

    srv = make_server(env={"LMX_REQUEST_TIMEOUT_S": "1.5"}, default_model=MLX_ID, wait_ready=True)
    body = _body("Tell a very long story.", max_tokens=4000, temperature=0)
    with srv.client() as http:
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 504 and r.json()["error"]["code"] == "lmx-timeout"
        chunks = _stream(http, "/v1/chat/completions", {**body, "stream": True})
        assert chunks[-1] == "[DONE]"
        assert chunks[-2]["error"]["code"] == "lmx-timeout"
        assert http.get("/readyz").status_code == 200
    rows = ErrorEvent.objects.using(server_db(srv)).filter(code="lmx-timeout")
    assert rows.count() == 2 and {r.http_status for r in rows} == {504}


def test_websocket_chat_stream(server):
    from websockets.sync.client import connect

    with connect(server.url.replace("http", "ws") + "/v1/chat/stream", open_timeout=30) as ws:
        ws.send(json.dumps({"model": MLX_ID, "messages": QUESTION, "temperature": 0, "max_tokens": 20}))
        tokens, done = [], None
        while done is None:
            message = json.loads(ws.recv(timeout=120))
            if "token" in message:
                tokens.append(message["token"])
            else:
                done = message
        assert "Paris" in "".join(tokens)
        assert done["done"] is True and done["finish_reason"] == "stop"
        stats = done["stats"]
        assert stats["completion_tokens"] == len(tokens) or stats["completion_tokens"] >= len(tokens)
        assert stats["tokens_per_second"] > 0 and stats["time_to_first_token_ms"] > 0
        assert stats["prompt_tokens"] == 37

        ws.send("{not json")
        error = json.loads(ws.recv(timeout=30))
        assert error["error"]["code"] == "invalid-request" and error["done"] is True
        ws.send(json.dumps({"model": "nope", "messages": QUESTION}))
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == "model-not-found"


def test_official_openai_client_works_unchanged(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed")
    reply = client.chat.completions.create(model=MLX_ID, messages=QUESTION, temperature=0, max_tokens=20)
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0
    stream = client.chat.completions.create(
        model=MLX_ID, messages=QUESTION, temperature=0, max_tokens=20, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == reply.choices[0].message.content
    assert [m.id for m in client.models.list().data].count(MLX_ID) == 1
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="missing-model", messages=QUESTION)
    assert caught.value.status_code == 404
    assert (
        caught.value.body["code"] == "model-not-found"
        or caught.value.body["error"]["code"] == "model-not-found"
    )


def test_ignore_eos_generates_exactly_max_tokens_for_benchmarks(server):
    """The model answers this in a few tokens and stops; with ignore_eos it goes on to max_tokens."""
    body = _body(temperature=0, max_tokens=40)
    with server.client() as http:
        normal = http.post("/v1/chat/completions", json=body).json()
        assert normal["choices"][0]["finish_reason"] == "stop"
        assert normal["usage"]["completion_tokens"] < 40
        forced = http.post("/v1/chat/completions", json={**body, "ignore_eos": True}).json()
        assert forced["choices"][0]["finish_reason"] == "length"
        assert forced["usage"]["completion_tokens"] == 40
        bad = http.post("/v1/chat/completions", json={**body, "ignore_eos": "yes"})
        assert bad.status_code == 400 and "ignore_eos" in bad.json()["error"]["message"]
        assert http.get("/readyz").status_code == 200
