"""A long prompt is prefilled in chunks between the decoding steps of the streams already
running (#25): their tokens keep coming while it is read."""

import json
import threading
import time

import httpx

from tests.conftest import MLX_ID


def _stream(url: str, body: dict, arrivals: list[float]) -> None:
    with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, timeout=300) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):  # text, not the opening role chunk
                    arrivals.append(time.monotonic())


def test_a_stream_keeps_receiving_tokens_while_a_long_prompt_is_prefilled(make_server):
    srv = make_server(default_model=MLX_ID, wait_ready=True)  # LMX_PREFILL_CHUNK=auto: paced by time
    decoding: list[float] = []
    story = {
        "model": MLX_ID,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 300,
        "ignore_eos": True,
        "temperature": 0,
    }
    runner = threading.Thread(target=_stream, args=(srv.url, story, decoding))
    runner.start()
    deadline = time.monotonic() + 120
    while len(decoding) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(decoding) >= 5
    long_prompt = " ".join(f"item{i}" for i in range(300))  # ~1,150 tokens
    first: list[float] = []
    sent = time.monotonic()
    _stream(
        srv.url, {**story, "messages": [{"role": "user", "content": long_prompt}], "max_tokens": 2}, first
    )
    runner.join(300)
    assert first, "the long request answered nothing"
    during = [t for t in decoding if sent < t < first[0]]
    # Paced to rounds of ~3 decoding steps, the prompt takes 20-40 rounds here; unpaced (256-token
    # rounds, as when the pacer had not seen the stream decode alone) it took 5.
    assert len(during) >= 16, (
        f"{len(during)} tokens reached the running stream while the long prompt was read"
    )
