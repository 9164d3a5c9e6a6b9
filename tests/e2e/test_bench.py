"""`manage.py lmx_bench` end to end: it starts LMX and mlx_lm.server, runs mlx-lm in-process, and
prints one table with every system's figures and the targets."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys

import pytest

from benchmarks.random_model import build
from tests.conftest import GGUF_ID, MLX_ID
from tests.lmx_server import ROOT

TINY = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 1024,
}
SMALL_RUN = ["--trials", "2", "--streams", "1,2", "--gen-tokens", "6", "--prompt-tokens", "16"]


def _bench(models, tmp_path, *args) -> str:
    env = {**os.environ, "LMX_MODELS_DIR": str(models), "LMX_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "manage.py", "lmx_bench", *args, "--out", str(tmp_path / "bench.md")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "bench.md").read_text().strip() in done.stdout  # --out appends the same table
    return done.stdout


def _row(table: str, label: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def _number(cell: str) -> float:
    assert re.fullmatch(r"-?[\d,]+(\.\d+)?×?", cell), cell
    return float(cell.rstrip("×").replace(",", ""))


def _ratio_fits(ratio: str, a: str, b: str) -> bool:
    """Whether the table's ratio is a / b, given that a and b are shown rounded."""

    def bounds(cell: str) -> tuple[float, float]:
        half = 0.5 * 10 ** -len(cell.partition(".")[2])
        return _number(cell) - half, _number(cell) + half

    (a_low, a_high), (b_low, b_high) = bounds(a), bounds(b)
    return a_low / b_high - 0.005 <= _number(ratio) <= a_high / b_low + 0.005


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    models = tmp_path_factory.mktemp("bench-models")
    build("llama-3.1-8b", models / "random-tiny", overrides=TINY)
    return models


def test_bench_compares_lmx_with_mlx_lm_and_its_server_in_one_table(tiny_models, tmp_path):
    table = _bench(
        tiny_models, tmp_path, "--model", "random-tiny", *SMALL_RUN, "--conversation-tokens", "100"
    )
    assert "taking turns while both held the model" in table  # a tiny model fits twice
    for label in ("decode tok/s, 1 stream", "time to first token, ms", "aggregate tok/s, 2 streams"):
        lmx, inproc, peer, vs_inproc, vs_peer = _row(table, label)
        assert _number(lmx) > 0 and _number(inproc) > 0 and _number(peer) > 0
        assert _ratio_fits(vs_inproc, lmx, inproc) and _ratio_fits(vs_peer, lmx, peer)
    for label in ("100-token chat, TTFT 1st → 2nd turn", "the same, a second chat of that length"):
        lmx, _, peer, *_ = _row(table, label)
        assert re.fullmatch(r"[\d,]+ → [\d,]+ ms \([\d.]+×\)", lmx) and re.fullmatch(r"[\d,]+ → .*", peer)
    assert re.search(r"\| /readyz p50 / p99 ms under 2 streams \| [\d.]+ / [\d.]+ \|", table)
    # when each of the most streams got its first token: how they were admitted
    for cell in _row(table, "first token under 2 streams, ms (min / median / max)")[::2][:2]:
        low, middle, high = (_number(v) for v in cell.split(" / "))
        assert 0 < low <= middle <= high
    # every one-stream trial in order: the table's decode cell is their median, and the paired
    # ratios are each LMX trial over the in-process trial beside it
    trials = re.search(r"decode trials, tok/s in order: LMX ([\d. ]+); mlx-lm in-process ([\d. ]+)\n", table)
    lmx_rates, inproc_rates = ([float(v) for v in group.split()] for group in trials.groups())
    assert len(lmx_rates) == len(inproc_rates) == 2
    lmx_cell, inproc_cell, *_ = _row(table, "decode tok/s, 1 stream")
    assert abs(statistics.median(lmx_rates) - _number(lmx_cell)) <= 0.1
    assert abs(statistics.median(inproc_rates) - _number(inproc_cell)) <= 0.1
    # the rates are shown to 0.1 tok/s and the ratios to 0.01: each pair's ratio lies in bounds
    bounds = [
        ((a - 0.05) / (b + 0.05), (a + 0.05) / (b - 0.05))
        for a, b in zip(lmx_rates, inproc_rates, strict=True)
    ]
    low, high = (
        float(v) for v in re.search(r"beside it: median [\d.]+×, ([\d.]+)-([\d.]+)×", table).groups()
    )
    assert min(lo for lo, _ in bounds) - 0.005 <= low <= min(hi for _, hi in bounds) + 0.005
    assert max(lo for lo, _ in bounds) - 0.005 <= high <= max(hi for _, hi in bounds) + 0.005
    # the random model's tokenizer spells JSON: structured output is measured on it too
    for streams in ("1 stream", "2 streams"):
        cell, *_, ratio, _ = _row(table, f"structured output (json_schema), {streams}, tok/s")
        assert _number(cell) > 0 and re.fullmatch(r"[\d.]+× of unconstrained \([\d,.]+\)", ratio)
    # and where a constrained stream's time goes: per request (first token) or per step (gaps)
    parts = [line for line in table.splitlines() if "median first token / gap between tokens" in line]
    assert len(parts) == 2
    for line in parts:
        cells = [c.strip() for c in line.split("|")]
        assert re.fullmatch(r"[\d.]+ / [\d.]+", cells[2])
        assert re.fullmatch(r"unconstrained [\d.]+ / [\d.]+", cells[5])
        # first tokens take time; a gap may round to 0.00: the tiny model steps in ~1.5 ms, as fast
        # as the HTTP path, so a stream's pieces sometimes arrive together
        (ttft, gap), (free_ttft, free_gap) = (
            (float(v) for v in re.findall(r"[\d.]+", cell)) for cell in (cells[2], cells[5])
        )
        assert ttft > 0 and free_ttft > 0 and gap >= 0 and free_gap >= 0
    targets = table.split("Targets:")[1]
    assert len(re.findall(r" — (met|\*\*missed\*\*)", targets)) == 7
    assert "Failed requests" not in table


def test_bench_runs_on_the_real_default_model_and_its_gguf_copy(model_store, tmp_path):
    args = ["--model", MLX_ID, "--gguf", GGUF_ID, "--conversation-tokens", "48", "--no-peer"]
    table = _bench(model_store, tmp_path, *args, *SMALL_RUN)
    assert f"### {MLX_ID} —" in table
    lmx, inproc, peer, *_ = _row(table, "decode tok/s, 1 stream")
    assert _number(lmx) > 0 and _number(inproc) > 0 and peer == "–"
    gguf, *_, of_mlx, _ = _row(table, f"GGUF copy ({GGUF_ID}) decode tok/s")
    assert _number(gguf) > 0 and of_mlx.endswith("× of MLX-native")
    native, *_ = _row(table, "the MLX-native model again, right after")  # the ratio's denominator
    assert _ratio_fits(of_mlx.removesuffix(" of MLX-native"), gguf, native)
    assert re.search(r"GGUF at most 10 % slower than MLX-native: [\d.]+× — (met|\*\*missed\*\*)", table)
    for label in ("1 stream", "2 streams"):  # a json_schema against none, same load
        constrained, *_, of_free, _ = _row(table, f"structured output (json_schema), {label}, tok/s")
        ratio, free = re.fullmatch(r"([\d.]+×) of unconstrained \(([\d.]+)\)", of_free).groups()
        assert _number(constrained) > 0 and _ratio_fits(ratio, constrained, free)
        assert re.search(
            rf"structured output ≥ 0.95 × unconstrained, {label}: [\d.]+× — (met|\*\*missed\*\*)", table
        )
    assert "Failed requests" not in table


def test_workloads_compare_lmx_with_mlx_lm_server_in_one_table(tiny_models, tmp_path):
    """--workload mixed and agent on a tiny model: every row measured for both servers."""
    (tmp_path / "mixed").mkdir()
    (tmp_path / "agent").mkdir()
    mixed = _bench(
        tiny_models, tmp_path / "mixed", "--model", "random-tiny", "--workload", "mixed", "--mixed-streams", "2",
        "--long-tokens", "600",
    )  # fmt: skip
    for label in ("their largest gap then, ms", "long prompt's TTFT among the streams, ms",
                  "the same prompt length alone, ms"):  # fmt: skip
        lmx, peer, _ = _row(mixed, label)
        assert _number(lmx) > 0 and _number(peer) > 0, (label, mixed)
    # a median gap of a tiny model may show as 0 ms: its pieces sometimes arrive together
    assert all(_number(cell) >= 0 for cell in _row(mixed, "streams' steady gap between tokens, ms")[:2]), (
        mixed
    )
    agent = _bench(
        tiny_models, tmp_path / "agent", "--model", "random-tiny", "--workload", "agent", "--sessions", "2",
        "--prefix-tokens", "400", "--turns", "2", "--turn-tokens", "40", "--reply-tokens", "8",
        "--ram-cache-mb", "1",
    )  # fmt: skip
    lmx_cached, peer_cached, _ = _row(agent, "prompt tokens served from cache, %")
    assert 0 < _number(lmx_cached) <= 100 and 0 <= _number(peer_cached) <= 100
    for label in ("turn TTFT median, ms (turns 2+)", "after a restart: known session's next turn, ms"):
        assert all(_number(cell) > 0 for cell in _row(agent, label)[:2]), (label, agent)


def test_the_cold_workload_times_start_to_ready_and_the_first_answer_for_both_servers(tiny_models, tmp_path):
    """--workload cold on a tiny model: LMX under both warm-up orders and mlx_lm.server, each with
    kernel caches of its own that the run removes after."""
    cold = _bench(
        tiny_models, tmp_path, "--model", "random-tiny", "--workload", "cold", "--cold-prompt-tokens", "64",
    )  # fmt: skip
    background, load, peer = _row(cold, "start to ready (readiness probe), s")
    assert _number(background) > 0 and _number(load) > 0 and peer == "–", cold
    assert all(_number(cell) > 0 for cell in _row(cold, "start to the first request's first token, s")), cold
    assert all(_number(cell) > 0 for cell in _row(cold, "second request's TTFT, ms")), cold
    assert "LMX (background): start-to-ready" in cold and "mlx_lm.server's start-to-first-answer" in cold
    assert not list((ROOT / "var" / "bench").glob("lmx-cold-*"))


def test_two_models_decode_in_turn_and_on_threads_against_one(tiny_models):
    """`lmx_bench_kernels --model PATH --two-models`: two copies of a model decoding n rows each,
    in turn on one thread and each on its own (inference.engine.model_thread), against 2n rows on
    one copy."""
    done = subprocess.run(
        [sys.executable, "manage.py", "lmx_bench_kernels", "--no-kernels", "--two-models",
         "--two-model-rows", "2", "--model", str(tiny_models / "random-tiny")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    assert "Two copies of random-tiny decoding at once, n = 2" in table
    tok_s, ratio = _row(table, "one model, 2n rows")
    assert _number(tok_s) > 0 and ratio == "1.00×", table
    for variant in ("two models, n each, in turn", "two models, n each, two threads"):
        tok_s, ratio = _row(table, variant)
        assert _number(tok_s) > 0 and _number(ratio) > 0, table


def test_the_mask_cost_profile_times_each_part_of_a_structured_output_step(tiny_models):
    """`lmx_bench_kernels --model PATH --masks`: the batch step with and without a json_schema
    grammar on every row, and the two parts isolated, at each batch size; then streams admitted
    to a busy batch and a lone stream, with and without grammars."""
    done = subprocess.run(
        [sys.executable, "manage.py", "lmx_bench_kernels", "--no-kernels", "--masks", "--batches", "1,2",
         "--model", str(tiny_models / "random-tiny")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    assert "| step, ms (pipelined) | batch 1 | batch 2 |" in table
    assert all(_number(cell) > 0 for cell in _row(table, "no grammar"))
    for variant in ("json_schema", "json_schema, mask sent every step", "upload only"):
        for cell in _row(table, variant):
            ms, ratio = re.fullmatch(r"([\d.]+) \(([\d.]+×)\)", cell).groups()
            assert _number(ms) > 0 and _number(ratio) > 0, (variant, table)
    # streams arriving at a busy batch, and a lone stream, each with and without grammars
    arriving = table[table.index("| 2 streams arriving 4 a step: first token, ms | median | max |") :]
    for variant in ("no grammar", "json_schema", "json_schema, first step mlx-lm's"):
        median, most = (_number(cell) for cell in _row(arriving, variant))
        assert 0 < median <= most, (variant, table)
    alone = table[
        table.index("| one stream decoded alone, ms a token | step | waiting for a token | masks |") :
    ]
    step, wait, masks = (_number(cell) for cell in _row(alone, "json_schema"))
    assert 0 < masks < step and 0 <= wait < step, table
    assert _number(_row(alone, "no grammar")[2]) == 0, table  # nothing masked without a grammar
