"""The /readyz benchmark's settings and the hook that applies them inside a running server."""

import gc
import json
import os
import re
import signal
import sys
import threading
import time

import pytest

from benchmarks import probe_sweep, server_hook


def test_settings_become_hook_commands():
    assert probe_sweep.parse_setting("switch=0.0002+gil") == ["switch 0.0002", "gil"]
    assert probe_sweep.parse_setting("freeze") == ["freeze"]
    assert probe_sweep.parse_setting("idle") == []
    assert probe_sweep.parse_setting("memstats=off+gil") == ["memstats off", "gil"]
    assert probe_sweep.parse_setting("step=mlx-lm") == ["step mlx-lm"]


@pytest.mark.parametrize(
    "setting",
    [
        "switch",
        "switch=fast",
        "switch=0",
        "gil=1",
        "faster",
        "switch=0.001+nope",
        "memstats",
        "memstats=no",
        "step=fast",
    ],
)
def test_an_unknown_setting_is_refused_with_the_valid_ones_named(setting):
    with pytest.raises(ValueError, match=re.escape(probe_sweep.USAGE)):
        probe_sweep.parse_setting(setting)


def test_the_hook_applies_a_command_and_reports_it(tmp_path):
    control = tmp_path / "hook"
    previous_handler, previous_interval = signal.getsignal(signal.SIGUSR2), sys.getswitchinterval()
    hook = server_hook.install(str(control))
    try:

        def send(text):
            control.write_text(text)
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)  # the handler runs at the main thread's next bytecode

        send("switch 0.0013")
        assert sys.getswitchinterval() == pytest.approx(0.0013)
        send("report")
        report = json.loads((tmp_path / "hook.out").read_text())
        assert report["switch"] == pytest.approx(0.0013)
        assert report["gil"] == [] and isinstance(report["gc"], list)
        send("switch")  # a malformed command is logged, and the process goes on
        assert sys.getswitchinterval() == pytest.approx(0.0013)
    finally:
        signal.signal(signal.SIGUSR2, previous_handler)
        sys.setswitchinterval(previous_interval)
        gc.callbacks.remove(hook.on_gc)


def test_a_long_gil_wait_names_the_thread_and_line_that_held_it(tmp_path):
    control = tmp_path / "hook"
    previous_handler = signal.getsignal(signal.SIGUSR2)
    hook = server_hook.install(str(control))
    try:
        hook.run(["gil"])
        time.sleep(0.05)
        # sum() over a range is one C call: it keeps the GIL until it returns; the holder then
        # sleeps on the same line, so it still stands there when the sampler looks (had it ended
        # at once, the sampler could find it already gone: 1 run in 3 failed so).
        holder = threading.Thread(
            target=lambda: (sum(range(20_000_000)), time.sleep(0.2)), name="busy-holder"
        )
        holder.start()
        holder.join()
        hook.run(["report"])
        report = json.loads((tmp_path / "hook.out").read_text())
        longest = max(report["gil"], key=lambda wait: wait[1])
        assert longest[1] > 0.010
        assert any(where.startswith("busy-holder: test_bench_probe.py:") for where in longest[2])
    finally:
        signal.signal(signal.SIGUSR2, previous_handler)
        gc.callbacks.remove(hook.on_gc)


def test_the_loop_setting_names_a_callback_that_blocked_the_event_loop(tmp_path):
    import asyncio

    control = tmp_path / "hook"
    previous_handler = signal.getsignal(signal.SIGUSR2)
    hook = server_hook.install(str(control))

    def blocking_callback():
        time.sleep(0.02)  # what a request handler doing blocking work looks like to the loop

    async def main():
        asyncio.get_running_loop().call_soon(blocking_callback)
        await asyncio.sleep(0.05)

    original = asyncio.events.Handle._run
    try:
        hook.run(["loop"])
        asyncio.run(main())
        hook.run(["report"])
        report = json.loads((tmp_path / "hook.out").read_text())
        assert [name for _, took, name in report["loop"] if took > 0.015] == [blocking_callback.__qualname__]
        assert asyncio.events.Handle._run is original  # the report put asyncio back as it was
    finally:
        signal.signal(signal.SIGUSR2, previous_handler)
        gc.callbacks.remove(hook.on_gc)


def test_the_table_ranks_the_engine_lines_a_trace_row_recorded():
    row = probe_sweep.Row(
        "trace",
        1000.0,
        [(1.0, 0.001), (2.0, 0.002)],
        0.0,
        3.0,
        0,
        calls=[(1.0, 0.004, "batch_step.py:40"), (1.5, 0.012, "solo.py:59"), (2.0, 0.018, "solo.py:59")],
    )
    text = probe_sweep.markdown([row], title="t")
    assert (
        "Engine-thread lines over 3 ms (count, total ms):\n\n- trace: solo.py:59 ×2, 30 ms; batch_step.py:40 ×1, 4 ms\n"
        in text
    )


@pytest.mark.parametrize("words", [["step", "fast"], ["memstats", "no"], ["memstats"], ["trace", "x"]])
def test_the_hook_refuses_a_bad_engine_command_before_it_reaches_the_engine(tmp_path, words):
    hook = server_hook._Hook(str(tmp_path / "hook"))
    with pytest.raises(ValueError, match="not a hook command"):
        hook.run(words)
    assert hook._engine_side is False
