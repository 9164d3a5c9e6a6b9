"""Diagnostics a benchmark switches on inside a running LMX, never set in normal serving.

`benchmarks.hooked_serve` (the benchmark's own launcher of `lmx_serve`, started by
`servers.start_lmx` with LMX_BENCH_HOOK=<control file>) installs a SIGUSR2 handler that reads one command
from that file, so one server (one model load, kernels compiled once) can be measured under
several settings (the server process's, but memstats, step and trace, which reach the engine
process through EngineClient.call):
    switch <seconds>   sys.setswitchinterval
    freeze | unfreeze  gc.freeze() / gc.unfreeze()
    gil                until the next report, a thread sleeps 0.2 ms in a loop and records each
                       time it gets the GIL back more than 3 ms late (who holds it that long is
                       inside a C call) and, past 10 ms, where every other thread stands then
    memstats off|on    whether the engine reads MLX's allocator figures after each step
    step lmx|mlx-lm    the decode step LMX runs (mlx_compat.generator) or mlx-lm's own
    loop               until the next report, every event-loop callback over 3 ms is recorded with
                       what it ran (a task's coroutine, or the function)
    trace              until the next report, the engine thread records every line of Python
                       that takes more than 3 ms (file:line)
    report             write {"switch", "gil": [[time, seconds, [thread: file:line, ...]]], "gc": [[time, gen, seconds]],
                       "calls": [[start time, seconds, file:line]],
                       "loop": [[start time, seconds, what]]} to <control file>.out and start over
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

GIL_SLEEP_S = 0.0002
GIL_LATE_S = 0.003
GIL_LONG_S = 0.010
SLOW_CALL_S = 0.003
ENGINE_SIDE = {"memstats", "step", "trace"}  # run in the engine process (on_engine)
# functions idle threads sit in (executor workers, the event loop's select, Condition.wait)
_PARKED = {"_worker", "select", "wait", "_wait_for_tstate_lock"}


def valid(name: str, value: str) -> bool:
    """Whether `name value` is a setting the hook takes (value "" for those without one)."""
    if name == "memstats":
        return value in ("on", "off")
    if name == "step":
        return value in ("lmx", "mlx-lm")
    if name != "switch":
        return not value
    try:
        return float(value) > 0
    except ValueError:
        return False


class _Hook:
    def __init__(self, control: str):
        self.control = control
        self.gil: list[tuple[float, float, list[str]]] = []
        self.gc: list[tuple[float, int, float]] = []
        self._gc_started = 0.0
        self._sampling = False
        self.calls: list[tuple[float, float, str]] = []
        self._engine_side = False  # whether an engine-side command was sent since the start
        self.loop: list[tuple[float, float, str]] = []
        self._loop_run = None  # asyncio's Handle._run while `loop` times it

    def on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc.append((time.time(), info["generation"], time.perf_counter() - self._gc_started))

    def sample_gil(self) -> None:
        while self._sampling:
            start = time.perf_counter()
            time.sleep(GIL_SLEEP_S)
            late = time.perf_counter() - start - GIL_SLEEP_S
            if late > GIL_LATE_S:
                self.gil.append((time.time(), late, _threads() if late > GIL_LONG_S else []))

    def on_signal(self, signum, frame) -> None:
        try:
            self.run(Path(self.control).read_text().split())
        except Exception:  # a diagnostic must never take the server down
            logging.getLogger("lmx").exception("Benchmark hook command failed")

    def run(self, words: list[str]) -> None:
        command, *args = words
        if command == "switch":
            sys.setswitchinterval(float(args[0]))
        elif command == "freeze":
            gc.freeze()
        elif command == "unfreeze":
            gc.unfreeze()
        elif command == "gil" and not self._sampling:
            self._sampling = True
            threading.Thread(target=self.sample_gil, name="lmx-gil-sampler", daemon=True).start()
        elif command in ENGINE_SIDE:
            if not valid(command, " ".join(args)):
                raise ValueError(f"not a hook command: {' '.join(words)!r}")
            self._engine_side = True
            # queued, not waited for: this runs in a signal handler on the event loop's thread
            runtime().get_engine().call(on_engine, words)
        elif command == "loop" and self._loop_run is None:
            self._time_loop()
        elif command == "report":
            self._sampling = False
            if self._loop_run is not None:
                asyncio.events.Handle._run, self._loop_run = self._loop_run, None
            if self._engine_side:  # the engine's lines, from its process
                self.calls = runtime().get_engine().call(on_engine, ["report"]).result(timeout=30)
            report = {
                "switch": sys.getswitchinterval(),
                "gil": self.gil,
                "gc": self.gc,
                "calls": self.calls,
                "loop": self.loop,
            }
            with open(self.control + ".out", "w") as f:
                json.dump(report, f)
            self.gil, self.gc, self.calls, self.loop = [], [], [], []

    def _time_loop(self) -> None:
        run = self._loop_run = asyncio.events.Handle._run
        slow = self.loop

        def timed(handle) -> None:
            callback, args = handle._callback, handle._args  # a handle cancelled while it runs loses them
            start = time.perf_counter()
            run(handle)
            took = time.perf_counter() - start
            if took > SLOW_CALL_S:
                slow.append((time.time() - took, took, _describe(callback, args)))

        asyncio.events.Handle._run = timed


class _EngineSide:
    """The settings that act on the engine, in the engine process, on its thread."""

    def __init__(self):
        self.calls: list[tuple[float, float, str]] = []
        self._last = (0.0, "")

    def run(self, engine, words: list[str]):
        command, *args = words
        if command == "memstats":
            engine.read_memory_each_step = args[0] == "on"
        elif command == "step":
            for resident in engine.host.residents.values():
                if resident.generator is not None:
                    resident.generator.use_host_read(args[0] == "lmx")
        elif command == "trace":
            self._last = (time.perf_counter(), "trace started")
            sys.settrace(self._trace)
        elif command == "report":
            sys.settrace(None)
            calls, self.calls = self.calls, []
            return calls
        return None

    def _trace(self, frame, event: str, arg):
        # MLX's functions are not Python builtins and raise no profiler events, so time the lines:
        # the time between two trace events went to the line that was running in between.
        now = time.perf_counter()
        took = now - self._last[0]
        if took > SLOW_CALL_S:
            self.calls.append((time.time() - took, took, self._last[1]))
        here = frame.f_back if event == "return" and frame.f_back is not None else frame
        self._last = (time.perf_counter(), f"{Path(here.f_code.co_filename).name}:{here.f_lineno}")
        return self._trace


_engine_side = _EngineSide()


def on_engine(engine, words: list[str]):
    """Run in the engine process by EngineClient.call: one engine-side command."""
    return _engine_side.run(engine, words)


def runtime():
    from inference import runtime

    return runtime


def _describe(callback, args) -> str:
    if getattr(callback, "__name__", "") == "callWithLogger" and len(args) > 1:
        # Twisted's reactor: socket I/O of args[0], handled by args[1]
        protocol = type(getattr(args[0], "protocol", None)).__name__
        return f"{getattr(args[1], '__qualname__', args[1])} ({protocol})"
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Future) and hasattr(owner, "get_coro"):
        return f"task {owner.get_coro().__qualname__}"
    return getattr(callback, "__qualname__", None) or repr(callback)


def _threads() -> list[str]:
    """Where each other thread stands, two frames deep: the one that just let the GIL go is
    still at (or just past) the line whose C call held it."""
    names = {t.ident: t.name for t in threading.enumerate()}
    me = threading.get_ident()
    out = []
    for ident, frame in sys._current_frames().items():
        if ident == me or frame.f_code.co_name in _PARKED:
            continue
        where = [f"{Path(f.f_code.co_filename).name}:{f.f_lineno}" for f in (frame, frame.f_back) if f]
        out.append(f"{names.get(ident, ident)}: {' < '.join(where)}")
    return out


def install(control: str) -> _Hook:
    hook = _Hook(control)
    gc.callbacks.append(hook.on_gc)
    signal.signal(signal.SIGUSR2, hook.on_signal)
    return hook
