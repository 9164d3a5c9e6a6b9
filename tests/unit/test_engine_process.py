"""The engine in its own process, driven through ProcessEngineClient with the real default model."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from inference.client.process import EngineLost, ProcessEngineClient
from inference.errors import NoModelLoaded
from inference.store import describe_mlx_folder
from inference.wire import Done, Failed, GenerationRequest, Started, Text, TokenizeKind
from tests.conftest import MLX_ID, running_engine, wait_for
from tests.lmx_server import ROOT


@pytest.fixture
def client():
    with running_engine(ProcessEngineClient, max_concurrent=2, max_queue=2) as engine:
        yield engine


@pytest.fixture
def loaded(client, model_store):
    client.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result(timeout=120)
    return client.loaded


async def _generate(client, loaded, question: str, n: int, *, cancel_after: int | None = None, on_event=None):
    """The request's events; `on_event(events)` runs after each (to kill the engine, end streams)."""
    messages = [{"role": "user", "content": question}]
    tokens = await asyncio.wrap_future(client.tokenize(loaded, TokenizeKind.CHAT, messages))
    stream = client.submit(GenerationRequest(tokens, n, temperature=0), model=loaded)
    events = []
    async for event in stream.events():
        events.append(event)
        if on_event is not None:
            on_event(events)
        if cancel_after is not None and sum(isinstance(e, Text) for e in events) == cancel_after:
            stream.cancel()
            break
    return events


def test_the_engine_process_answers_and_the_server_side_mirrors_its_state(client, loaded):
    assert loaded.spec.id == MLX_ID and loaded.vocab_size == 49152 and loaded.context_length == 8192
    assert [(e["action"], e["model"]) for e in client.events] == [("loaded", MLX_ID)]
    events = asyncio.run(_generate(client, loaded, "What is the capital of France?", 12))
    text = "".join(e.text for e in events if isinstance(e, Text))
    assert "Paris" in text
    assert isinstance(events[0], Started) and isinstance(events[-1], Done)
    assert events[-1].finish_reason == "stop"
    stats = events[-1].stats
    assert wait_for(lambda: client.counters.generated_tokens == stats.completion_tokens + 1)  # + EOS
    assert client.counters.completed == 1 and client.active_requests == 0
    assert client.memory.active > 0


def test_a_cancelled_stream_leaves_the_engine_and_frees_its_place(client, loaded):
    events = asyncio.run(_generate(client, loaded, "Write a long story.", 400, cancel_after=2))
    assert isinstance(events[-1], Text)
    assert wait_for(lambda: client.active_requests == 0)
    generated = client.counters.generated_tokens
    assert generated < 20  # stopped within a step or two of the cancel, not at 400
    assert wait_for(lambda: client.counters.generated_tokens == generated, timeout=1)


def test_a_request_for_a_model_no_longer_loaded_is_refused(client, loaded):
    client.unload().result(timeout=30)
    assert wait_for(lambda: client.loaded is None)
    with pytest.raises(NoModelLoaded):
        client.tokenize(loaded, TokenizeKind.TEXT, "Hello").result(timeout=30)


def test_a_killed_engine_process_fails_its_requests_then_comes_back_with_the_model(client, loaded):
    def kill(events):
        if isinstance(events[-1], Text) and client.pid == killed:
            os.kill(killed, signal.SIGKILL)

    killed = client.pid
    events = asyncio.run(_generate(client, loaded, "Write a long story.", 400, on_event=kill))
    error = events[-1]
    assert (
        isinstance(error, Failed)
        and isinstance(error.error, EngineLost)
        and error.error.code == "internal-error"
    )
    assert ("unloaded", MLX_ID) in [(e["action"], e["model"]) for e in client.events]
    assert wait_for(lambda: client.loaded is not None, timeout=120)
    assert client.pid != killed and client.loaded.spec.id == MLX_ID
    again = asyncio.run(_generate(client, client.loaded, "What is the capital of France?", 12))
    assert "Paris" in "".join(e.text for e in again if isinstance(e, Text))


def test_concurrent_loads_of_one_model_through_the_client_load_it_once(client, model_store):
    spec = describe_mlx_folder(model_store / MLX_ID, MLX_ID)
    results = [f.result(timeout=120) for f in [client.load(spec) for _ in range(3)]]
    assert [(e["action"], e["model"]) for e in client.events] == [("loaded", MLX_ID)]
    assert [r.already_loaded for r in results] == [False] * 3  # all three answered by the one load


def test_ended_streams_get_the_error_and_later_requests_are_refused_with_it(client, loaded):
    def end(events):
        if sum(isinstance(e, Text) for e in events) == 2 and client.active_requests:
            assert client.end_streams("Stopping now.") == 1

    events = asyncio.run(_generate(client, loaded, "Write a long story.", 400, on_event=end))
    with pytest.raises(NoModelLoaded, match=r"Stopping now\."):
        client.submit(GenerationRequest([1, 2, 3], 4, temperature=0), model=loaded)
    error = events[-1]
    assert isinstance(error, Failed) and error.error.code == "no-model-loaded"
    assert error.error.message == "Stopping now."
    assert client.active_requests == 0
    time.sleep(0.5)  # a step or two for the cancel to reach the engine
    generated = client.counters.generated_tokens
    time.sleep(1.0)  # ~7 more tokens here, were it still generating
    assert client.counters.generated_tokens == generated < 20


EXITS_WITHOUT_STOPPING = """
import os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lmx_site.settings")
django.setup()
from inference.client.process import ProcessEngineClient
client = ProcessEngineClient(max_concurrent=1, max_queue=1, prompt_cache_size=1, prompt_cache_bytes=1 << 20).start()
assert client.unload().result(timeout=60).freed_vram_gb == 0  # the engine process answers
print(client.pid, flush=True)
"""


def test_a_process_that_exits_without_stopping_its_engine_stops_it_and_exits():
    done = subprocess.run(
        [sys.executable, "-c", EXITS_WITHOUT_STOPPING], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    # Nothing but the engine's pid: no warning (it stopped in order), no abort message.
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    with pytest.raises(ProcessLookupError):
        os.kill(int(done.stdout), 0)
