"""The engine's own process: MLX, the model, the batch and the tokenizer live here.

In one process with the server, every step's Python (graph building, sampling, detokenizing)
took the GIL from the server's event loop and /readyz waited behind it (docs/BENCHMARKS.md).
Here the engine has a GIL of its own; the server gets one message per step. Messages both ways
are inference.wire's typed commands and messages; this side dispatches on their type.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from inference import wire
from inference.engine.slot import TaggedSlot, tagged_slot
from inference.errors import LMXError, to_lmx_error

log = logging.getLogger("lmx.engine")


def main(conn, options: dict) -> None:
    """The process's entry point (multiprocessing spawn)."""
    # Ctrl-C, and a service manager's SIGTERM, reach the whole group: the server stops us in order
    # (the Stop command, or the end of the pipe if it is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lmx_site.settings")
    import django

    django.setup()
    _Child(conn, options).serve()


class _Pipe:
    """The sending end, shared by the engine thread, the tokenizers and the receiver."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: wire.Message) -> None:
        with self.lock:
            try:
                self.conn.send(message)
            except (OSError, ValueError):  # the server is gone; the receiver sees EOF and stops us
                pass


class PipeOutbox:
    """A step's events leave in one message, with the counters and memory figures of that
    moment. Used by the engine thread only."""

    def __init__(self, pipe: _Pipe):
        self.pipe = pipe
        self.engine = None
        self._items: list[tuple[int, wire.Event]] = []
        self._last: tuple | None = None

    def put(self, slot, item: wire.Event) -> None:
        self._items.append((slot.rid, item))

    def flush(self) -> None:
        counters = wire.EngineCounters(**vars(self.engine.counters))
        figures = (counters, self.engine.memory)
        if not self._items and figures == self._last:
            return
        items, self._items, self._last = self._items, [], figures
        self.pipe.send(wire.StepEvents(items, *figures))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type can fail to pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class _Child:
    def __init__(self, conn, options: dict):
        from inference.engine.core import Engine
        from inference.engine.startup import log_speedups

        options = dict(options)
        if options.pop("log_speedups", False):
            log_speedups()
        self.conn = conn
        self.pipe = _Pipe(conn)
        self.outbox = PipeOutbox(self.pipe)
        self.engine = Engine(
            **options,
            announce=self.pipe.send,
            outbox=self.outbox,
            on_state=self._send_state,
        )
        self.outbox.engine = self.engine
        self.slots: dict[int, TaggedSlot] = {}
        self.tokenizers = ThreadPoolExecutor(2, thread_name_prefix="lmx-tokenize")
        self.handlers = {
            wire.Load: lambda m: self._reply(m.call, self.engine.load(m.spec, m.options)),
            wire.Unload: lambda m: self._reply(m.call, self.engine.unload(m.path, m.reason)),
            wire.DropCaches: lambda m: self._reply(m.call, self.engine.drop_caches()),
            wire.Tokenize: self._tokenize,
            wire.Embed: lambda m: self._reply(
                m.call, self.engine.embed(m.path, m.loaded_at, m.token_lists, m.pooling)
            ),
            wire.RerankPrompts: lambda m: self._reply(
                m.call, self.engine.rerank(m.path, m.loaded_at, m.token_lists, m.yes, m.no)
            ),
            wire.ScorePrompt: lambda m: self._reply(
                m.call, self.engine.score(m.path, m.loaded_at, m.tokens, m.top)
            ),
            wire.Call: lambda m: self._reply(
                m.call, self.engine.run_on_engine(lambda: m.fn(self.engine, *m.args))
            ),
            wire.Generate: self._generate,
            wire.Cancel: self._cancel,
        }

    def _send_state(self, engine) -> None:
        models = tuple(loaded.info() for loaded in engine.models)
        self.pipe.send(wire.EngineState(models, engine.loading, engine.oom_unloaded))

    def serve(self) -> None:
        self.engine.start()
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # the server process is gone
                break
            if isinstance(message, wire.Stop):
                break
            try:
                self.handlers[type(message)](message)
            except Exception:  # one bad message must not stop the engine
                log.exception("Engine message %s failed", type(message).__name__)
        self.engine.stop_and_join()
        self.tokenizers.shutdown(wait=False)

    def _reply(self, call: int, future: Future) -> None:
        def send(done: Future) -> None:
            exc = done.exception()
            if exc is None:
                self.pipe.send(wire.Reply(call, True, done.result()))
            else:
                self.pipe.send(wire.Reply(call, False, _portable(exc)))

        future.add_done_callback(send)

    def _tokenize(self, message: wire.Tokenize) -> None:
        from inference.engine import tokens

        def run():
            return tokens.tokenize(
                self.engine.model_for(message.path).tokenizer, message.kind, message.payload
            )

        self._reply(message.call, self.tokenizers.submit(run))

    def _generate(self, message: wire.Generate) -> None:
        rid = message.rid
        try:
            tokenizer = self.engine.model_for(message.path).tokenizer
            slot = tagged_slot(rid, self.slots, message.request, tokenizer)
            self.slots[rid] = slot
            self.engine.submit(slot, message.path)
        except Exception as exc:  # noqa: BLE001 - the request fails, the engine goes on
            self.slots.pop(rid, None)
            error = exc if isinstance(exc, LMXError) else to_lmx_error(exc)
            self.pipe.send(wire.RequestRefused(rid, error))

    def _cancel(self, message: wire.Cancel) -> None:
        slot = self.slots.get(message.rid)
        if slot is not None:
            slot.cancel()
