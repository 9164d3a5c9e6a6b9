"""A resident model's own thread: the second and later models that generate (LMX_MODEL_THREADS).

MLX evaluates with the GIL released, so a model stepped on its own thread builds its next step's
graph while another model's step is encoded and run; stepped in turn on the engine thread, each
one's host work waited for the other's (#23; docs/BENCHMARKS.md, session 25). MLX evaluates a
thread's work on that thread's streams, and a lazy array made on one thread cannot be evaluated
on another: so everything of such a model's batch (making its generator, admitting, stepping,
ending its requests) runs on its thread, and the engine thread waits for each step it hands over.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future


def enabled() -> bool:
    from inference import conf

    return conf.on_with_cuda("LMX_MODEL_THREADS")


class ModelThread:
    def __init__(self, name: str):
        self._jobs: queue.Queue[tuple[Callable[[], object], Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], object]) -> Future:
        done: Future = Future()
        self._jobs.put((fn, done))
        return done

    def call(self, fn: Callable[[], object]):
        """`fn()` on this thread; its result, or its exception raised here."""
        return self.submit(fn).result()

    def stop(self, timeout: float = 30.0) -> None:
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        import mlx.core as mx

        try:
            while (job := self._jobs.get()) is not None:
                fn, done = job
                try:
                    done.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - the caller hears it
                    done.set_exception(exc)
        finally:
            mx.clear_streams()  # as the engine thread does: before the thread ends, not at exit
