"""GGUF files on a real server (#24, #26 item 3): a K-quant file of another architecture is
listed with its widths, loads beside the resident model and answers; damaged files are refused
by name with 400 before anything is unloaded; an unsupported architecture is named as such."""

from pathlib import Path

import pytest

from tests.conftest import MLX_ID, link_model
from tests.gguf_files import Q, crafted, write

REFUSED = ("alignment-0.gguf", "blocks-100000.gguf", "shifted.gguf", "truncated.gguf", "no-tokens.gguf")


@pytest.fixture
def gguf_store(model_store: Path, tmp_path: Path) -> Path:
    store = link_model(model_store / MLX_ID, tmp_path / "store" / MLX_ID).parent
    path, _ = write(tmp_path / "made", "qwen3", Q.Q4_K)
    path.rename(store / "tiny-qwen3-Q4_K.gguf")
    for name, (made, _) in crafted(tmp_path / "crafted").items():
        if name in (*REFUSED, "mamba.gguf"):
            made.rename(store / name)
    return store


def test_gguf_files_are_served_refused_or_named(make_server, gguf_store, tmp_path):
    expected = {name: fault for name, (_, fault) in crafted(tmp_path / "again").items()}
    srv = make_server(models_dir=gguf_store, default_model=MLX_ID, wait_ready=True)
    with srv.client(timeout=120) as http:
        models = {m["id"]: m for m in http.get("/admin/models").json()["models"]}
        tiny = models["tiny-qwen3-Q4_K.gguf"]
        assert tiny["architecture"] == "qwen3" and tiny["mlx_bits"] == [4] and tiny["error"] is None
        for name in REFUSED:
            load = http.post("/admin/models/load", json={"model": name})
            assert load.status_code == 400 and load.json()["error"]["code"] == "invalid-request", load.text
            message = load.json()["error"]["message"]
            assert expected[name] in message and "corrupt" in message, (name, message)
            assert http.get("/readyz").json()["model"] == MLX_ID
        mamba = http.post("/admin/models/load", json={"model": "mamba.gguf"})
        assert mamba.status_code == 400
        message = mamba.json()["error"]["message"]
        assert "GGUF architecture 'mamba' is not supported (supported: gemma2, gemma3, llama" in message
        assert "corrupt" not in message
        load = http.post("/admin/models/load", json={"model": "tiny-qwen3-Q4_K.gguf"})
        assert load.status_code == 200, load.text
        answer = http.post(
            "/v1/completions",
            json={"model": "tiny-qwen3-Q4_K.gguf", "prompt": "hello", "max_tokens": 4, "temperature": 0},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] >= 1
        resident = {m["id"] for m in http.get("/admin/models").json()["models"] if m["loaded"]}
        assert resident == {MLX_ID, "tiny-qwen3-Q4_K.gguf"}
