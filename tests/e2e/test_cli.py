"""The `lmx` command-line client (#27 item 2), installed into the virtualenv by `make setup`,
driven as a user runs it against real servers: tables, --json, exit statuses with the server's
message, a hub download with its progress bar, and a streamed chat with the real default model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import GGUF_ID, MLX_ID
from tests.fake_hub import FakeHub

LMX = Path(sys.executable).parent / "lmx"
REPO = "lmx-test/SmolLM2-cli-mirror"
TOKEN = "cli-admin-token"


def lmx(srv, *args: str, stdin: str = "", token: str | None = TOKEN, timeout: float = 180):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMX_")}
    env["LMX_URL"] = srv.url if srv else "http://127.0.0.1:9"
    if token:
        env["LMX_ADMIN_TOKEN"] = token
    return subprocess.run(
        [str(LMX), *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout
    )


def test_the_entry_point_is_installed():
    assert LMX.is_file(), "make setup installs the `lmx` entry point (pip install -e .)"
    shown = lmx(None, "--help")
    assert shown.returncode == 0
    for command in ("ps", "ls", "load", "unload", "pull", "errors", "status", "chat"):
        assert command in shown.stdout


def test_pull_load_ps_unload_ls_against_a_guarded_server(make_server, model_store, tmp_path):
    source = model_store / MLX_ID
    files = {p.name: p for p in source.iterdir() if p.is_file()}
    total = sum(p.stat().st_size for p in files.values())
    hub = FakeHub({}, files={REPO: files}, bytes_per_s=total / 4)  # about four seconds
    try:
        srv = make_server(env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "LMX_ADMIN_TOKEN": TOKEN})

        refused = lmx(srv, "ls", token=None)
        assert refused.returncode == 1 and "(unauthorized)" in refused.stderr

        pulled = lmx(srv, "pull", REPO)
        assert pulled.returncode == 0, pulled.stderr
        bars = [float(p) for p in re.findall(r"\]\s+([\d.]+)%", pulled.stdout)]
        assert len(bars) >= 2 and bars[-1] == 100.0 and bars[0] < 100.0, pulled.stdout
        assert bars == sorted(bars)  # progress only goes forward
        assert f"Downloaded {REPO}" in pulled.stdout

        again = lmx(srv, "--json", "pull", REPO)
        assert again.returncode == 0 and json.loads(again.stdout)["downloaded"] is False
    finally:
        hub.close()

    listed = lmx(srv, "ls")
    assert listed.returncode == 0
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert {MLX_ID, GGUF_ID, REPO} <= set(rows) and "hf-cache" in rows[REPO]

    loaded = lmx(srv, "load", GGUF_ID, "--pin", "--context-length", "2048")
    assert loaded.returncode == 0, loaded.stderr
    assert re.match(rf"Loaded {re.escape(GGUF_ID)} in [\d.]+ s \([\d.]+ GB", loaded.stdout)
    ps = lmx(srv, "ps")
    header, row = ps.stdout.splitlines()[:2]
    assert header.split() == ["MODEL", "FORMAT", "MEMORY", "STATE", "ACTIVE", "UNLOADS", "CONTEXT"]
    assert row.split()[0] == GGUF_ID and "pinned" in row and "2048" in row
    resident = json.loads(lmx(srv, "--json", "ps").stdout)
    assert [m["id"] for m in resident] == [GGUF_ID] and resident[0]["pinned"]

    missing = lmx(srv, "load", "no-such-model")
    assert missing.returncode == 1
    assert "not in the model store" in missing.stderr and "(model-not-found)" in missing.stderr
    errors = lmx(srv, "errors", "--code", "model-not-found")
    assert errors.returncode == 0 and "POST /admin/models/load" in errors.stdout
    assert "not in the model store" in errors.stdout

    unloaded = lmx(srv, "unload", GGUF_ID)
    assert unloaded.returncode == 0 and f"Unloaded {GGUF_ID}" in unloaded.stdout
    assert "No model is resident" in lmx(srv, "ps").stdout
    status = lmx(srv, "status")
    assert status.returncode == 1 and "not ready (no-model-loaded)" in status.stdout  # nothing resident
    assert lmx(srv, "unload").returncode == 2  # neither a model nor --all


def test_status_and_a_streamed_chat_with_the_default_model(server):
    status = lmx(server, "--json", "status")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["readyz"]["ready"] and report["memory"]["vram_total_gb"] > 0
    assert report["throughput"]["tokens_per_second"] >= 0
    shown = lmx(server, "status")
    assert "ready" in shown.stdout and "tok/s" in shown.stdout and MLX_ID in shown.stdout

    chat = lmx(
        server,
        "chat",
        MLX_ID,
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        stdin="What is the capital of France?\nAnd of Germany?\n",
    )
    assert chat.returncode == 0, chat.stderr
    first, second = chat.stdout.strip().splitlines()[:2]
    assert "Paris" in first
    assert "Berlin" in second  # the second question is answered with the first in the history


def test_an_unreachable_server_exits_3(tmp_path):
    gone = lmx(None, "ps")
    assert gone.returncode == 3 and "cannot reach LMX at http://127.0.0.1:9" in gone.stderr


def test_server_refusals_end_with_its_message(server):
    bad_ttl = lmx(server, "load", MLX_ID, "--ttl", "soon")
    assert bad_ttl.returncode == 1 and bad_ttl.stderr.startswith("lmx: ") and "ttl_s" in bad_ttl.stderr
    # JIT is off on the shared server: a chat naming another model is refused by the server
    not_served = lmx(server, "chat", GGUF_ID, stdin="hi\n")
    assert not_served.returncode == 1 and "(no-model-loaded)" in not_served.stderr, not_served.stderr
