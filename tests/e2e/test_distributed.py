"""One model served by two processes on MLX's distributed layer (the ring backend over loopback,
`lmx_serve --ranks 2`): the same greedy and seeded tokens as one process with requests batched,
streamed and not; cancelling; a model that cannot be split refused by name; the group shown in
/admin/models and /metrics; rank 0 stopping the follower in order; a lost rank reported."""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import openai
import psutil
import pytest

from benchmarks.random_model import TINY_LLAMA, build
from tests.conftest import MLX_ID, link_model, wait_for
from tests.e2e.test_cli import lmx

TINY = {**TINY_LLAMA, "vocab_size": 512}  # heads 4, key/value heads 2, MLP 128: all divide by 2
MODELS = {
    "tiny-llama": ("llama-3.1-8b", {}),
    "tiny-qwen3": (
        "qwen3-30b-a3b",
        {"moe_intermediate_size": 64, "num_experts": 4, "num_experts_per_tok": 2},
    ),
}
# mlx-lm splits Ministral 3 by layers too (model.model.pipeline): 3 layers over 2 ranks, 2 + 1.
PIPELINED = {
    "tiny-ministral3": (
        "llama-3.1-8b",
        {
            "model_type": "ministral3",
            "num_hidden_layers": 3,
            "tie_word_embeddings": True,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "llama_4_scaling_beta": 0.1,
                "original_max_position_embeddings": 16384,
            },
        },
    )
}
PROMPTS = ["w10 w11 w12", "w200 w7", "w33 w34 w35 w36 w37", "w400"]
RANKS = ("--ranks", "2")


@pytest.fixture(scope="module")
def group_store(tmp_path_factory, model_store) -> Path:
    store = tmp_path_factory.mktemp("group-store")
    for name, (shape, extra) in {**MODELS, **PIPELINED}.items():
        build(shape, store / name, layers=2, overrides={**TINY, **extra})
    link_model(model_store / MLX_ID, store / MLX_ID)  # 9 heads, 3 key/value heads: no split by 2
    return store


def _client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


def _answer(client: openai.OpenAI, model: str, prompt: str, *, stream: bool, **sampling) -> str:
    kwargs = {"temperature": 0, **sampling}
    messages = [{"role": "user", "content": prompt}]
    if not stream:
        reply = client.chat.completions.create(model=model, messages=messages, max_tokens=12, **kwargs)
        return reply.choices[0].message.content
    chunks = client.chat.completions.create(
        model=model, messages=messages, max_tokens=12, stream=True, **kwargs
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


MODES = ((False, {}), (True, {}), (True, {"temperature": 0.9, "seed": 7}))  # stream?, sampling


def _answers(srv, models, *, together: bool) -> dict:
    """Each model's answers to every prompt, greedy streamed and not, and seeded sampling: the
    four prompts of a model and mode at once (they share the model's batch), or one by one."""
    client = _client(srv)
    answers = {}
    with ThreadPoolExecutor(len(PROMPTS) if together else 1) as pool:
        for model in models:
            for stream, sampling in MODES:
                texts = pool.map(partial(_answer, client, model, stream=stream, **sampling), PROMPTS)
                for prompt, text in zip(PROMPTS, texts, strict=True):
                    answers[(model, prompt, stream, json.dumps(sampling))] = text
    return answers


def _followers(srv) -> list[psutil.Process]:
    """The rank processes rank 0 started (each a `manage.py lmx_serve` with MLX_RANK >= 1)."""
    found = []
    for child in psutil.Process(srv.proc.pid).children(recursive=True):
        try:
            if child.cmdline()[-1:] == ["lmx_serve"] and child.environ().get("MLX_RANK") not in (None, "0"):
                found.append(child)
        except psutil.Error:
            continue
    return found


def _load(http, model: str) -> dict:
    return http.post("/admin/models/load", json={"model": model}).json()


def test_two_ranks_serve_the_tokens_of_one_and_refuse_a_model_they_cannot_split(make_server, group_store):
    one = make_server(models_dir=group_store)
    two = make_server(models_dir=group_store, serve_args=RANKS)
    for srv in (one, two):
        with srv.client() as http:
            for model in MODELS:
                assert _load(http, model)["success"] is True
    # One by one and batched (four requests at once: the batch), streamed and not, greedy and
    # seeded, each model's tokens on 2 ranks are those of 1 rank.
    one_by_one = _answers(one, MODELS, together=False)
    assert all(one_by_one.values()) and _answers(two, MODELS, together=False) == one_by_one
    batched = _answers(one, MODELS, together=True)
    assert batched == one_by_one and _answers(two, MODELS, together=True) == batched
    alone = one_by_one

    with two.client() as http:
        listed = http.get("/admin/models").json()
        group = listed["group"]
        assert group["ranks"] == 2 and group["backend"] == "ring" and len(group["hosts"]) == 2
        assert group["lost"] is None and len(group["memory_gb_by_rank"]) == 2
        sharding = {m["id"]: m["sharding"] for m in listed["models"] if m["loaded"]}
        assert sharding == {"tiny-llama": "tensor", "tiny-qwen3": "tensor"}
        metrics = http.get("/metrics").text
        rank1 = [
            line for line in metrics.splitlines() if line.startswith('lmx_rank_memory_used_bytes{rank="1"}')
        ]
        assert rank1 and float(rank1[0].split()[-1]) > 0  # the follower's own shard, measured there

        refused = http.post("/admin/models/load", json={"model": MLX_ID})
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert refused.json()["error"]["code"] == "invalid-request"
        assert "9 attention heads do not divide by 2 ranks" in message and "pipeline" in message
        assert http.get("/readyz").json()["ready"] is True

    # The prompt cache: a prompt sent again starts from what the first left, on every rank.
    client = _client(two)
    prompt = [{"role": "user", "content": " ".join(f"w{i}" for i in range(40, 80))}]
    replies = {}
    for srv in (one, two):
        for _ in range(2):
            again = _client(srv).chat.completions.create(
                model="tiny-llama", messages=prompt, max_tokens=6, temperature=0
            )
        replies[srv.port] = (
            again.choices[0].message.content,
            again.usage.prompt_tokens_details.cached_tokens,
        )
    (text_one, cached_one), (text_two, cached_two) = replies.values()
    assert cached_two > 0 and (text_two, cached_two) == (text_one, cached_one)

    # A stream cancelled on rank 0 is dropped on both ranks: the group serves on, in step.
    chunks = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "w5"}], max_tokens=2000, stream=True
    )
    for _ in zip(range(3), chunks, strict=False):
        pass
    chunks.close()
    assert (
        _answer(client, "tiny-llama", PROMPTS[0], stream=False)
        == alone[("tiny-llama", PROMPTS[0], False, "{}")]
    )

    followers = _followers(two)
    assert len(followers) == 1
    two.stop()  # SIGINT to rank 0: its engine stops the follower at the same step
    assert two.proc.returncode == 0
    assert not followers[0].is_running()
    assert "Rank 1 stopped (exit code 0)" in two.stderr() + two.stdout()


def test_pipeline_sharding_serves_the_tokens_of_one_rank(make_server, group_store):
    one = make_server(models_dir=group_store)
    piped = make_server(models_dir=group_store, serve_args=RANKS, env={"LMX_SHARDING": "pipeline"})
    for srv in (one, piped):
        with srv.client() as http:
            assert _load(http, "tiny-ministral3")["success"] is True
    for together in (False, True):
        alone = _answers(one, PIPELINED, together=together)
        assert all(alone.values()) and _answers(piped, PIPELINED, together=together) == alone
    with piped.client() as http:
        listed = http.get("/admin/models").json()
        assert listed["group"]["sharding"] == "pipeline"
        assert [m["sharding"] for m in listed["models"] if m["loaded"]] == ["pipeline"]
        refused = http.post("/admin/models/load", json={"model": "tiny-llama"})
        assert refused.status_code == 400
        message = refused.json()["error"]["message"]
        assert "(LMX_SHARDING=pipeline): pipeline: llama has no pipeline split" in message


def test_a_lost_rank_ends_the_stream_with_a_coded_error_and_readyz_says_why(make_server, group_store):
    srv = make_server(models_dir=group_store, default_model="tiny-llama", serve_args=RANKS, wait_ready=True)
    (follower,) = _followers(srv)
    body = {
        "model": "tiny-llama",
        "messages": [{"role": "user", "content": "w9 w8"}],
        "max_tokens": 100000,
        "ignore_eos": True,
        "stream": True,
    }
    events = []
    with srv.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: {") and len(events) < 3:
                events.append(json.loads(line[6:]))
                if len(events) == 3:
                    follower.send_signal(signal.SIGKILL)
                    killed = time.monotonic()
            elif line.startswith("data: {"):
                events.append(json.loads(line[6:]))
        ended = time.monotonic()
        assert ended - killed < 10
        assert events[-1]["error"]["code"] == "distributed-rank-lost"
        assert "rank 1" in events[-1]["error"]["message"]

        ready = wait_for(lambda: http.get("/readyz").status_code == 503, timeout=10)
        assert ready
        probe = http.get("/readyz").json()
        assert probe["error"] == "distributed-rank-lost" and "rank 1" in probe["reason"]
        assert http.get("/healthz").status_code == 200
        after = http.post("/v1/chat/completions", json={**body, "stream": False, "max_tokens": 4})
        assert after.status_code == 503 and after.json()["error"]["code"] == "distributed-rank-lost"
        assert http.get("/admin/models").json()["group"]["lost"].startswith("rank 1")
        history = http.get("/admin/errors", params={"code": "distributed-rank-lost"}).json()
        assert "distributed-group" in {e["endpoint"] for e in history["errors"]}  # recorded once, by itself
    assert "Rank 1 (pid" in srv.stderr() + srv.stdout()
    shown = lmx(srv, "status", token=None)
    assert shown.returncode == 1
    # rank 0 hears first from the launcher ("exited with code -9") or from the ring ("was lost")
    assert "not ready (distributed-rank-lost: rank 1 " in shown.stdout


def test_rank_0s_engine_dying_breaks_the_group_and_is_not_restarted_alone(make_server, group_store):
    srv = make_server(models_dir=group_store, default_model="tiny-llama", serve_args=RANKS, wait_ready=True)
    (follower,) = _followers(srv)
    engine = srv.engine_process()
    engine.send_signal(signal.SIGKILL)
    with srv.client() as http:
        assert wait_for(lambda: http.get("/readyz").status_code == 503, timeout=10)
        probe = http.get("/readyz").json()
        assert probe["error"] == "distributed-rank-lost"
        assert probe["reason"] == "rank 0's engine process stopped (exit code -9)"
        assert http.get("/healthz").status_code == 200
        body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "w1"}], "max_tokens": 2}
        refused = http.post("/v1/chat/completions", json=body)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "distributed-rank-lost"
    assert follower.wait(15) is None or not follower.is_running()  # it left the broken group
    assert "Engine process restarted" not in srv.stderr() + srv.stdout()


def test_a_rank_that_stops_answering_is_called_lost_after_the_timeout(make_server, group_store):
    srv = make_server(
        models_dir=group_store,
        default_model="tiny-llama",
        serve_args=RANKS,
        wait_ready=True,
        env={"LMX_DISTRIBUTED_TIMEOUT_S": "3"},
    )
    (follower,) = _followers(srv)
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "w3"}], "max_tokens": 100000}
    body.update(ignore_eos=True, stream=True)
    events = []
    with srv.client() as http:
        try:
            with http.stream("POST", "/v1/chat/completions", json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        events.append(json.loads(line[6:]))
                        if len(events) == 3:
                            follower.suspend()  # frozen, sockets open: only the watchdog can tell
                            frozen = time.monotonic()
            assert time.monotonic() - frozen < 15
            assert events[-1]["error"]["code"] == "distributed-rank-lost"
            assert "rank 1 stopped answering for 3 s" in events[-1]["error"]["message"]
            probe = http.get("/readyz").json()
            assert probe["error"] == "distributed-rank-lost" and "stopped answering" in probe["reason"]
            assert http.get("/healthz").status_code == 200
        finally:
            follower.resume()
    # the follower, back but stuck in a group that is gone, ignores signals: it ends when rank
    # 0's server does, whatever ended that (here a kill, as a crash would)
    srv.proc.kill()
    srv.proc.wait()
    follower.wait(timeout=10)  # psutil.TimeoutExpired if it lingers
