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
import time
from concurrent.futures import Future, ThreadPoolExecutor

from inference import wire
from inference.engine.lockstep import SHARED
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
    options = dict(options)
    group = _join(options.pop("distributed", None))
    _Child(conn, options, group).serve()


def follow(options: dict) -> int:
    """A rank other than 0 of a distributed group (in its `lmx_serve` process): the engine
    follows rank 0's steps on its shard of each model, serves nothing, and returns its exit code
    when rank 0 stops it (0) or the group breaks (1)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # rank 0 stops the group in order
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _leave_with_parent(os.environ.get("LMX_RANK_PARENT"))
    options = dict(options)
    options.pop("log_speedups", None)
    child = _Child(None, options, _join(options.pop("distributed")))
    child.engine.start()
    child.engine.join()
    return 1 if child.engine.group.lost else 0


def _leave_with_parent(parent: str | None) -> None:
    """A follower that `lmx_serve --ranks` started (LMX_RANK_PARENT: that server's pid) ends
    when that server is gone. It ignores signals and may wait in a collective with an engine that
    no longer exists (rank 0 ended the group, or was killed): nobody else would end it, and it
    holds its shard of the model."""
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1.0)
        log.error("Rank 0's server (pid %s) is gone; this rank leaves the group", parent)
        os._exit(1)

    threading.Thread(target=watch, name="lmx-rank-parent", daemon=True).start()


def _join(settings: dict | None):
    if not settings:
        return None
    from inference.engine.distributed import Group

    return Group.join(**settings)


class _Pipe:
    """The sending end, shared by the engine thread, the tokenizers and the receiver."""

    def __init__(self, conn):
        self.conn = conn  # None on a follower rank: nobody listens
        self.lock = threading.Lock()

    def send(self, message: wire.Message) -> None:
        if self.conn is None:
            return
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
    def __init__(self, conn, options: dict, group=None):
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
            group=group,
        )
        self.outbox.engine = self.engine
        self.slots: dict[int, TaggedSlot] = {}
        self.tokenizers = ThreadPoolExecutor(2, thread_name_prefix="lmx-tokenize")
        self.handlers = {
            wire.Load: lambda m: self._reply(m.call, self.engine.load(m.spec, m.options, m.loaded_at)),
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
        self.lockstep = None
        if group is not None:
            self._in_group(group)

    def _in_group(self, group) -> None:
        from inference.engine.distributed import Watchdog
        from inference.engine.lockstep import Expire, Lockstep

        self.handlers[Expire] = self._expire
        self.lockstep = Lockstep(group, self._dispatch, live=lambda rid: rid in self.slots)
        self.engine.lockstep = self.lockstep
        self.engine.on_group_lost = self._group_lost
        if group.rank == 0:
            Watchdog(group, self._group_lost)
            # Handled on the receiver: the engine thread may be stuck in a collective with it.
            self.handlers[wire.RankLost] = lambda m: self._group_lost(m.reason)

    def _dispatch(self, message) -> None:
        """A command shared by rank 0, run on this rank (engine thread)."""
        try:
            self.handlers[type(message)](message)
        except Exception:  # one bad command must not stop the group
            log.exception("Shared engine command %s failed", type(message).__name__)

    def _group_lost(self, reason: str) -> None:
        """The group cannot step any more. Rank 0's server hears why (its /readyz says so, its
        requests end with distributed-rank-lost) and keeps serving HTTP; this process ends."""
        group = self.engine.group
        group.lost = reason
        if group.rank == 0:
            self.pipe.send(wire.EngineState((), None, self.engine.oom_unloaded, group.info()))
        else:
            log.error("Rank %d leaves the group: %s", group.rank, reason)
        os._exit(3 if group.rank == 0 else 1)

    def _expire(self, message) -> None:
        slot = self.slots.get(message.rid)
        if slot is not None:
            slot.deadline = 0.0  # past: the scheduler fails it at the next step, on every rank

    def _send_state(self, engine) -> None:
        models = tuple(loaded.info() for loaded in engine.models)
        group = engine.group.info() if engine.group is not None else None
        self.pipe.send(wire.EngineState(models, engine.loading, engine.oom_unloaded, group))

    def serve(self) -> None:
        self.engine.start()
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # the server process is gone
                break
            if isinstance(message, wire.Stop):
                break
            if self.lockstep is not None and isinstance(message, SHARED):
                self.lockstep.post(message)  # run by every rank at the next exchange
                continue
            try:
                self.handlers[type(message)](message)
            except Exception:  # one bad message must not stop the engine
                log.exception("Engine message %s failed", type(message).__name__)
        if self.lockstep is not None:
            self.lockstep.post(wire.Stop())  # the followers stop at the same exchange
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
            if self.lockstep is not None:  # rank 0's clock decides, through the lockstep
                deadline, slot.deadline = slot.deadline, None
                if deadline is not None and self.engine.group.rank == 0:
                    self.lockstep.deadlines[rid] = deadline
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
