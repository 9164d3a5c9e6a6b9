"""A model store no file can break (#26 item 2): a symlink loop and crafted GGUF headers (a
string longer than the file, 2^62 key/values, 17 dimensions, dimensions of 2^62, random bytes,
a sparse 64 GiB file claiming 2^40 strings) are listed with what is wrong with them, loading one
answers 400 naming it, and the server keeps listing, serving and its loaded model."""

import os
import struct
from pathlib import Path

import pytest

from tests.conftest import MLX_ID, link_model

HEAD = b"GGUF" + struct.pack("<I", 3)


def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


def _tensor(dims: list[int]) -> bytes:
    return (
        _string("t")
        + struct.pack("<I", len(dims))
        + struct.pack(f"<{len(dims)}Q", *dims)
        + struct.pack("<IQ", 0, 0)
    )


CRAFTED = {  # file name: (bytes, what the listing and the load must say)
    "long-string.gguf": (
        HEAD + struct.pack("<QQ", 0, 1) + struct.pack("<Q", 2**64 - 1),
        "more than the file holds",
    ),
    "many-pairs.gguf": (HEAD + struct.pack("<QQ", 0, 2**62), "claims 4611686018427387904 key/value pairs"),
    "many-dims.gguf": (HEAD + struct.pack("<QQ", 1, 0) + _tensor([2] * 17), "17 dimensions"),
    "huge-dims.gguf": (HEAD + struct.pack("<QQ", 1, 0) + _tensor([2**62, 2**62]), "elements"),
    "random.gguf": (b"GGUF" + os.urandom(1 << 20), ""),  # whatever the bytes claim
}


@pytest.fixture
def hostile_store(model_store: Path, tmp_path: Path) -> Path:
    store = link_model(model_store / MLX_ID, tmp_path / "store" / MLX_ID).parent
    for name, (data, _) in CRAFTED.items():
        (store / name).write_bytes(data)
    (store / "loop.gguf").symlink_to(store / "loop.gguf")
    (store / "loop-dir").symlink_to(store / "loop-dir")
    sparse = store / "sparse.gguf"  # 2^40 empty strings in an array, in 64 GiB of nothing
    with sparse.open("wb") as f:
        f.write(HEAD + struct.pack("<QQ", 0, 1) + _string("a") + struct.pack("<IIQ", 9, 8, 2**40))
        f.truncate(64 << 30)
    return store


def test_crafted_files_are_listed_with_their_fault_and_refused_by_name(make_server, hostile_store):
    srv = make_server(models_dir=hostile_store, default_model=MLX_ID, wait_ready=True)
    with srv.client(timeout=30) as http:  # a sparse 64 GiB header once kept these past 10 s
        for _ in range(2):  # the first scan reads the headers, the second remembers them
            listed = http.get("/admin/models")
            assert listed.status_code == 200, listed.text
            models = {m["id"]: m for m in listed.json()["models"]}
            assert http.get("/v1/models").status_code == 200
        assert "loop.gguf" not in models and "loop-dir" not in models
        faults = {name: fault for name, (_, fault) in CRAFTED.items()} | {"sparse.gguf": "array items"}
        for name, fault in faults.items():
            assert name in models, name
            error = models[name]["error"]
            assert error.startswith("unreadable GGUF header") and fault in error, (name, error)
            load = http.post("/admin/models/load", json={"model": name})
            assert load.status_code == 400 and load.json()["error"]["code"] == "invalid-request"
            assert fault in load.json()["error"]["message"], (name, load.text)
        assert models[MLX_ID]["loaded"] and http.get("/readyz").json()["model"] == MLX_ID
        chat = http.post(
            "/v1/chat/completions",
            json={"model": MLX_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )
        assert chat.status_code == 200
