"""The engine's own process: MLX, the model, the batch and the tokenizer live here.

The server process answers HTTP on one event loop. In one process with the engine, every step's
Python (graph building, sampling, detokenizing) took the GIL from that loop, and /readyz waited
behind it (p99 11-18 ms under 32 streams on an H100). Here the engine has a GIL of its own; the
server gets one message per step and its loop only formats and writes.

Messages in (from engine_client.EngineClient), each a tuple:
    ("load", call, spec) ("unload", call, reason) ("tokenize", call, path, kind, payload)
    ("call", call, fn, args)          fn(engine, *args) on the engine thread, between steps
    ("generate", rid, path, request) ("cancel", rid) ("stop",)
Messages out:
    ("reply", call, ok, result or exception)
    ("events", [(rid, event), ...], counters, memory)   one per step, as generation.Slot's events
                                                        plus ("closed",) for a cancelled request
    ("failed", rid, error)                              a request the engine did not take
    ("state", LoadedInfo | None, loading, oom_unloaded)
    ("notify", model lifecycle event)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from inference.errors import LMXError, to_lmx_error
from inference.generation import Slot

log = logging.getLogger("lmx.engine")


def main(conn, options: dict) -> None:
    """The process's entry point (multiprocessing spawn)."""
    # Ctrl-C, and a service manager's SIGTERM, reach the whole group: the server stops us in order
    # (the "stop" message, or the end of the pipe if it is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lmx_site.settings")
    import django

    django.setup()
    _Child(conn, options).serve()


class _Wire:
    """The sending end, shared by the engine thread, the tokenizers and the receiver."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: tuple) -> None:
        with self.lock:
            try:
                self.conn.send(message)
            except (OSError, ValueError):  # the server is gone; the receiver sees EOF and stops us
                pass


class PipeOutbox:
    """generation.Outbox's role here: a step's events leave in one message, with the counters
    and memory figures of that moment. Used by the engine thread only."""

    def __init__(self, wire: _Wire):
        self.wire = wire
        self.engine = None
        self._items: list[tuple[int, tuple]] = []
        self._last: tuple | None = None

    def put(self, slot, item: tuple) -> None:
        self._items.append((slot.rid, item))

    def flush(self) -> None:
        figures = (dataclasses.astuple(self.engine.counters), self.engine.memory)
        if not self._items and figures == self._last:
            return
        items, self._items, self._last = self._items, [], figures
        self.wire.send(("events", items, *figures))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception type can fail to pickle
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class _Child:
    def __init__(self, conn, options: dict):
        from inference.engine import Engine

        self.conn = conn
        self.wire = _Wire(conn)
        self.outbox = PipeOutbox(self.wire)
        self.engine = Engine(
            **options,
            listeners=[lambda event: self.wire.send(("notify", event))],
            outbox=self.outbox,
            on_state=self._send_state,
        )
        self.outbox.engine = self.engine
        self.slots: dict[int, object] = {}
        self.tokenizers = ThreadPoolExecutor(2, thread_name_prefix="lmx-tokenize")

    def _send_state(self, engine) -> None:
        loaded = engine.loaded
        info = loaded.info() if loaded is not None else None
        self.wire.send(("state", info, engine.loading, engine.oom_unloaded))

    def serve(self) -> None:
        self.engine.start()
        handlers = {
            "load": lambda call, spec: self._reply(call, self.engine.load(spec)),
            "unload": lambda call, reason: self._reply(call, self.engine.unload(reason)),
            "tokenize": self._tokenize,
            "call": lambda call, fn, args: self._reply(
                call, self.engine.run_on_engine(lambda: fn(self.engine, *args))
            ),
            "generate": self._generate,
            "cancel": self._cancel,
        }
        while True:
            try:
                kind, *args = self.conn.recv()
            except (EOFError, OSError):  # the server process is gone
                break
            if kind == "stop":
                break
            try:
                handlers[kind](*args)
            except Exception:  # one bad message must not stop the engine
                log.exception("Engine message %s failed", kind)
        self.engine.stop_and_join()
        self.tokenizers.shutdown(wait=False)

    def _reply(self, call: int, future: Future) -> None:
        def send(done: Future) -> None:
            exc = done.exception()
            if exc is None:
                self.wire.send(("reply", call, True, done.result()))
            else:
                self.wire.send(("reply", call, False, _portable(exc)))

        future.add_done_callback(send)

    def _tokenize(self, call: int, path: str, kind: str, payload) -> None:
        from inference import tokens

        def run():
            return tokens.tokenize(self.engine.model_for(path).tokenizer, kind, payload)

        self._reply(call, self.tokenizers.submit(run))

    def _generate(self, rid: int, path: str, request) -> None:
        try:
            tokenizer = self.engine.model_for(path).tokenizer
            slot = PipeSlot(
                rid,
                self.slots,
                request,
                detokenizer=tokenizer.detokenizer,
                eos_token_ids=tokenizer.eos_token_ids,
            )
            slot.wake_engine = self.engine.wake
            self.slots[rid] = slot
            self.engine.submit(slot)
        except Exception as exc:  # noqa: BLE001 - the request fails, the engine goes on
            self.slots.pop(rid, None)
            error = exc if isinstance(exc, LMXError) else to_lmx_error(exc)
            self.wire.send(("failed", rid, error))

    def _cancel(self, rid: int) -> None:
        slot = self.slots.get(rid)
        if slot is not None:
            slot.cancel()


class PipeSlot(Slot):
    """A Slot whose events go back to the server by pipe, tagged with the request's id."""

    def __init__(self, rid: int, registry: dict, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rid = rid
        self._registry = registry

    def close(self) -> None:
        self._push(("closed",))  # the server stops counting it
        super().close()

    def _release(self) -> None:
        self._registry.pop(self.rid, None)
        super()._release()
