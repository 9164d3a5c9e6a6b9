"""Warm-up left after a model is ready (inference.engine.warming), run by the real engine with the
real default model only while nothing else runs (#25: start-to-ready pays for what the first
requests need)."""

import asyncio
import logging
import threading

import pytest

from inference.engine import loading
from inference.engine.core import Engine
from inference.engine.slot import Slot
from inference.engine.warming import Warming
from inference.store import describe_mlx_folder
from inference.wire import GenerationRequest, Text
from tests.conftest import MLX_ID, running_engine


@pytest.fixture
def engine():
    with running_engine(Engine, max_concurrent=4) as eng:
        yield eng


class Pieces:
    """Warm-up pieces that note when they ran and whether a request was being decoded then."""

    def __init__(self, engine: Engine, n: int):
        self.engine, self.ran, self.busy = engine, [], []
        self.first_may_run = threading.Event()
        self.pieces = [(f"piece {i}", lambda i=i: self._run(i)) for i in range(n)]

    def _run(self, i: int) -> None:
        if i == 0:
            assert self.first_may_run.wait(30)
        self.busy.append(self.engine.host.busy)
        self.ran.append(i)


def _answer(engine: Engine, prompt: str, n: int) -> str:
    tokenizer = engine.loaded.tokenizer

    async def run() -> str:
        slot = Slot(
            GenerationRequest(tokenizer.encode(prompt), n, temperature=0),
            detokenizer=tokenizer.detokenizer,
            eos_token_ids=tokenizer.eos_token_ids,
        )
        engine.submit(slot)
        return "".join([e.text async for e in slot.events() if isinstance(e, Text)])

    return asyncio.run(run())


def test_the_model_is_ready_before_the_later_warm_up_which_runs_only_while_the_engine_is_idle(
    engine, model_store, monkeypatch, settings, caplog
):
    settings.LMX_WARM_UP = "background"
    pieces = Pieces(engine, 4)
    monkeypatch.setattr(loading, "later_warm_ups", lambda model: pieces.pieces)
    caplog.set_level(logging.INFO, logger="lmx.engine")
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result(timeout=120)
    assert pieces.ran == []  # ready first: the pieces wait for an idle engine
    pieces.first_may_run.set()
    answer = _answer(engine, "The capital of France is", 8)
    assert "Paris" in answer
    for _ in range(100):
        if len(pieces.ran) == 4:
            break
        engine.run_on_engine(lambda: None).result(timeout=30)
    engine.run_on_engine(lambda: None).result(timeout=30)  # taken once the last piece is done
    assert pieces.ran == [0, 1, 2, 3]
    assert not any(pieces.busy)  # never while a request was decoded
    assert f"Warm-up of {MLX_ID} finished in the background: 4 pieces" in caplog.text
    assert not engine.host.warming


def test_under_warm_up_load_every_piece_runs_before_the_model_is_ready(
    engine, model_store, monkeypatch, settings, caplog
):
    settings.LMX_WARM_UP = "load"
    pieces = Pieces(engine, 3)
    pieces.first_may_run.set()
    monkeypatch.setattr(loading, "later_warm_ups", lambda model: pieces.pieces)
    caplog.set_level(logging.INFO, logger="lmx.engine")
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result(timeout=120)
    assert pieces.ran == [0, 1, 2] and not engine.host.warming
    assert f"Warm-up of {MLX_ID} before ready: 3 pieces" in caplog.text


def test_an_unload_forgets_the_pieces_left_which_hold_the_model(engine, model_store, monkeypatch, settings):
    settings.LMX_WARM_UP = "background"
    pieces = Pieces(engine, 3)  # the first waits: none runs before the unload
    monkeypatch.setattr(loading, "later_warm_ups", lambda model: pieces.pieces)
    engine.load(describe_mlx_folder(model_store / MLX_ID, MLX_ID)).result(timeout=120)
    unloaded = engine.unload()  # queued behind the first piece
    pieces.first_may_run.set()
    unloaded.result(timeout=30)
    engine.run_on_engine(lambda: None).result(timeout=30)
    assert pieces.ran in ([], [0]) and not engine.host.warming


def test_a_failing_piece_is_logged_and_the_rest_still_run(caplog):
    warming, ran = Warming(), []

    def fail():
        raise RuntimeError("no kernel")

    warming.add("/m", "m", [("a", fail), ("b", lambda: ran.append("b"))])
    warming.add("/n", "n", [("c", lambda: ran.append("c"))])
    caplog.set_level(logging.INFO, logger="lmx.engine")
    while warming:
        warming.run_next()
    assert ran == ["b", "c"]
    assert "Warm-up of m (a) failed: no kernel" in caplog.text
    assert "Warm-up of m finished in the background: 2 pieces" in caplog.text
