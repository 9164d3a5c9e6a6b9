"""What the Anthropic and Responses endpoints share with chat completions: a client that leaves
a stream frees its slot at once, a busy server answers in each API's error shape, and /metrics
counts each endpoint's requests."""

import time

import httpx

from tests.conftest import MLX_ID, wait_for

LONG = [{"role": "user", "content": "Tell a very long story."}]
# A string longer than the test waits for: the grammar keeps the answer from ending on its own
# (a greedy story may take another path from a cached prefix and end after a few tokens).
ENDLESS = {
    "type": "object",
    "properties": {"story": {"type": "string", "minLength": 100000}},
    "required": ["story"],
}
STREAMS = {
    "/v1/messages": (
        {
            "model": MLX_ID,
            "messages": LONG,
            "max_tokens": 2000,
            "stream": True,
            "temperature": 0,
            "output_config": {"format": {"type": "json_schema", "schema": ENDLESS}},
        },
        "text_delta",
    ),
    "/v1/responses": (
        {
            "model": MLX_ID,
            "input": LONG,
            "max_output_tokens": 2000,
            "stream": True,
            "temperature": 0,
            "text": {"format": {"type": "json_schema", "name": "story", "schema": ENDLESS}},
        },
        "output_text.delta",
    ),
}
SHORT = {
    "/v1/messages": {"model": MLX_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
    "/v1/responses": {"model": MLX_ID, "input": "Hi", "max_output_tokens": 2, "store": False},
}


def test_a_client_leaving_a_stream_frees_its_slot_and_busy_is_said_in_each_api_s_shape(make_server):
    srv = make_server(
        env={"LMX_MAX_CONCURRENT": "1", "LMX_MAX_QUEUE": "0"}, default_model=MLX_ID, wait_ready=True
    )
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        for path, (body, delta) in STREAMS.items():
            with http.stream("POST", path, json=body) as r:
                seen, lines = 0, r.iter_lines()
                for line in lines:
                    seen += delta in line
                    if seen == 3:
                        break
                assert seen == 3, f"{path}: the story ended before the test could leave it"
                busy = httpx.post(srv.url + path, json=SHORT[path])
                if busy.status_code != 503:  # say how the story ended, to tell a flake from a bug
                    rest = [line for _, line in zip(range(40), lines, strict=False)][-6:]
                    raise AssertionError(f"{path}: busy got {busy.status_code}; the story went on: {rest}")
                assert "Retry-After" in busy.headers, (path, busy.text[:200])
                if path == "/v1/messages":
                    assert (
                        busy.json()["type"] == "error" and busy.json()["error"]["type"] == "overloaded_error"
                    )
                else:
                    assert busy.json()["error"]["code"] == "server-busy"
            started = time.monotonic()  # the client is gone: its slot must come free at once
            freed = wait_for(
                lambda path=path: httpx.post(srv.url + path, json=SHORT[path], timeout=60).status_code == 200,
                timeout=10,
                interval=0.05,
            )
            assert freed and time.monotonic() - started < 10, f"{path}: the slot was not freed"
        metrics = http.get("/metrics").text
    for path in STREAMS:
        counted = [
            line
            for line in metrics.splitlines()
            if line.startswith("lmx_requests_total{") and f'"{path}"' in line
        ]
        assert counted and sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= 1, path
