"""mlx-lm's internals behind one package: on a version the patches were not written for they turn
off with one warning, and the engine gives the same greedy tokens on mlx-lm's public path."""

import asyncio
import logging

from inference.client.inprocess import InProcessEngineClient
from inference.engine import mlx_compat
from inference.store import describe_mlx_folder
from inference.wire import Done, GenerationRequest, Text, TokenizeKind
from tests.conftest import MLX_ID, running_engine

QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "What is two plus two?"]


def test_an_unknown_mlx_lm_version_turns_the_patches_off_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="lmx.engine"):
        assert mlx_compat.check("0.32.2") is True
        assert caplog.records == []
        assert mlx_compat.check("0.99.0") is False
    (record,) = caplog.records
    assert "mlx-lm 0.99.0 is installed" in record.getMessage()
    assert "written for 0.32.2" in record.getMessage() and "\n" not in record.getMessage()


def _answers(client) -> tuple[list[str], str]:
    """Greedy answers to QUESTIONS asked together (the batch) and the first alone (decoded
    alone), through the in-process client; and the load's backend."""

    async def ask(questions):
        loaded = client.loaded
        streams = []
        for question in questions:
            messages = [{"role": "user", "content": question}]
            tokens = await asyncio.wrap_future(client.tokenize(loaded, TokenizeKind.CHAT, messages))
            streams.append(client.submit(GenerationRequest(tokens, 10, temperature=0), model=loaded))
        out = []
        for stream in streams:
            text, last = "", None
            async for event in stream.events():
                text += event.text if isinstance(event, Text) else ""
                last = event
            assert isinstance(last, Done)
            out.append(text)
        return out

    together = asyncio.run(ask(QUESTIONS))
    alone = asyncio.run(ask(QUESTIONS[:1]))
    return [*together, *alone], client.loaded.backend


def test_real_model_with_the_patches_off_the_engine_gives_the_same_greedy_tokens(
    model_store, settings, monkeypatch
):
    settings.LMX_BATCH_LAYERS = "on"  # on this CPU only when asked: the patches' own switch
    settings.LMX_CPU_FAST_PATH = "off"  # quantized layers, which the batch layers swap
    spec = describe_mlx_folder(model_store / MLX_ID, MLX_ID)
    results = {}
    for active in (True, False):
        monkeypatch.setattr(mlx_compat, "ACTIVE", active)
        with running_engine(InProcessEngineClient, max_concurrent=4, max_queue=4) as client:
            client.load(spec).result()
            results[active] = _answers(client)
            assert client.active_requests == 0
    (patched, patched_backend), (public, public_backend) = results[True], results[False]
    assert "+batch-layers" in patched_backend and "+batch-layers" not in public_backend
    assert public == patched
    assert "Paris" in patched[0] and patched[3] == patched[0]
