"""GGUF through LMX's own layer (#24): every registered architecture and the common quant types
give the logits mlx-lm gives for the same weights in an MLX-native folder; the vocabularies
tokenize as their references do; damaged and unsupported files are named, never called corrupt
when they are not."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from tests.gguf_files import ARCHS, Q, crafted, write
from tests.tokenizer_files import SENTENCES, write_spm_gguf

IDS = mx.array([[5, 70, 101, 33, 200, 17, 99, 256, 3, 44, 120, 64]])
EXPECTED_IDS = json.loads((Path(__file__).parent.parent / "data" / "gguf_token_ids.json").read_text())


def _logits(model) -> np.ndarray:
    return np.array(model(IDS).astype(mx.float32))


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _both(tmp_path: Path, arch: str, ggml_type):
    from mlx_lm.utils import load_model

    from inference.engine import gguf

    path, ref = write(tmp_path, arch, ggml_type)
    described = gguf.read_model(path)
    return described, gguf.instantiate(described.config, described.weights), load_model(ref)[0]


# Exact types: only float16 arithmetic separates LMX from mlx-lm on the file's own values.
EXACT = {Q.F16: None, Q.Q4_0: 4, Q.Q4_1: 4, Q.Q5_0: 5, Q.Q8_0: 8}
# Re-quantized types land as MLX's own quantization of the file's values at their width: LMX may
# lose no more than that quantization does (x1.5, + float16 arithmetic). Q6_K's two 16-value
# sub-blocks with their own scales share one MLX group of 32: 1.5 % weight error, which a random
# model magnifies; Q4_K/Q5_K's 32-value sub-blocks land almost exactly.
REQUANTIZED = {Q.Q4_K: 4, Q.Q5_K: 5, Q.Q6_K: 6}
ISSUE_TYPES = [Q.Q4_0, Q.Q8_0, Q.Q4_K, Q.Q5_0, Q.Q6_K]  # every architecture with each (#24)


def _check(tmp_path: Path, arch: str, ggml_type) -> None:
    from mlx_lm.utils import load_model

    described, ours, reference = _both(tmp_path, arch, ggml_type)
    bits = EXACT.get(ggml_type, REQUANTIZED.get(ggml_type))
    layer = ours.model.layers[0]
    out_proj = layer.self_attn.o_proj
    assert isinstance(out_proj, nn.QuantizedLinear) == (bits is not None)
    if bits is not None:
        assert out_proj.bits == bits and described.config["quantization"]["bits"] == bits
    expected = _logits(reference)
    error = _relative(_logits(ours), expected)
    if ggml_type in EXACT:
        assert error < 0.005, error
        return
    own = load_model(tmp_path / f"{arch}-{ggml_type.name}-mlx")[0]
    nn.quantize(own, group_size=32, bits=bits)
    assert error <= 1.5 * _relative(_logits(own), expected) + 0.005, error


@pytest.mark.parametrize("ggml_type", ISSUE_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_and_quant_type_gives_mlx_lm_logits(tmp_path, arch, ggml_type):
    _check(tmp_path, arch, ggml_type)


@pytest.mark.parametrize("ggml_type", [Q.F16, Q.Q4_1, Q.Q5_K], ids=lambda t: t.name)
def test_the_other_common_types_too(tmp_path, ggml_type):
    _check(tmp_path, "llama", ggml_type)


def test_sentencepiece_vocabulary_tokenizes_as_sentencepiece(tmp_path):
    from transformers import AutoTokenizer

    from inference.engine.gguf import tokenizer
    from inference.gguf.reader import open_file

    path, processor = write_spm_gguf(tmp_path)
    tokenizer.write(open_file(path), tmp_path / "tok")
    built = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    ours = [built.encode(s) for s in SENTENCES]
    assert ours == [[1, *processor.encode(s)] for s in SENTENCES]  # llama.cpp adds BOS, as the file says
    assert ours == EXPECTED_IDS["spm"]
    assert [built.decode(ids, skip_special_tokens=True) for ids in ours] == SENTENCES


def test_byte_level_bpe_vocabulary_tokenizes_as_tiktoken(model_store):
    """The default model's own GGUF vocabulary (byte-level BPE, SmolLM2's digit-by-digit split)
    against tiktoken's BPE built from the same vocabulary."""
    import tiktoken
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from inference.engine.gguf import tokenizer
    from inference.gguf.reader import open_file
    from tests.conftest import GGUF_ID

    f = open_file(model_store / GGUF_ID)
    from transformers import AutoTokenizer

    tokenizer.write(f, model_store.parent / "bpe-tok")
    built = AutoTokenizer.from_pretrained(str(model_store.parent / "bpe-tok"))
    byte = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {
        bytes(byte[c] for c in token): i
        for i, (token, kind) in enumerate(
            zip(f.get("tokenizer.ggml.tokens"), f.get("tokenizer.ggml.token_type"), strict=True)
        )
        if kind == 1
    }
    split = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    reference = tiktoken.Encoding("smollm2", pat_str=split, mergeable_ranks=ranks, special_tokens={})
    ours = [built.encode(s) for s in SENTENCES]
    assert ours == [reference.encode(s) for s in SENTENCES]
    assert ours == EXPECTED_IDS["smollm2-bpe"]


def test_damaged_and_unsupported_files_are_named(tmp_path):
    from inference.gguf.inspect import summarize

    for name, (path, expected) in crafted(tmp_path).items():
        summary = summarize(path)
        assert summary.error and expected in summary.error, (name, summary.error)
        assert "corrupt" not in summary.error
        assert summary.unsupported == (name in ("mamba.gguf", "unknown-type.gguf")), name


def test_the_engine_refuses_what_the_inventory_refuses(tmp_path):
    """Loaded directly (as the engine would), a damaged file fails with the same reason before any
    model is built."""
    from inference.engine import gguf
    from inference.errors import ModelLoadError

    files = crafted(tmp_path)
    for name in ("blocks-100000.gguf", "shifted.gguf", "mamba.gguf"):
        path, expected = files[name]
        with pytest.raises(ModelLoadError, match=expected.split(" (")[0]):
            gguf.read_model(path)


def test_inventory_reports_the_file_type_and_the_mlx_widths(tmp_path):
    from inference.store import describe_gguf

    path, _ = write(tmp_path, "qwen3", Q.Q6_K)
    spec = describe_gguf(path, path.name)
    assert spec.architecture == "qwen3" and spec.extra["mlx_bits"] == [6]
    assert spec.extra["tensor_types"]["Q6_K"] > 0 and "error" not in spec.extra
    assert spec.bits and 6 < spec.bits < 7


def test_a_converted_folder_gives_the_gguf_logits(tmp_path):
    """lmx_convert_gguf's output (a K-quant file of another architecture than the default model's)
    loads in mlx-lm as it is and computes what the GGUF file computes in LMX."""
    from django.core.management import call_command
    from mlx_lm.utils import load_model

    from inference.engine import gguf

    path, _ = write(tmp_path, "qwen3", Q.Q4_K)
    call_command("lmx_convert_gguf", str(path), out=str(tmp_path / "converted"))
    described = gguf.read_model(path)
    served = gguf.instantiate(described.config, described.weights)
    converted, _ = load_model(tmp_path / "converted")
    assert np.array_equal(_logits(served), _logits(converted))
    assert (tmp_path / "converted" / "tokenizer.json").is_file()


@pytest.mark.parametrize("factor", [8.0, 32.0])  # Llama 3.1 and Llama 3.2
def test_rope_freqs_are_read_back_as_llama3_rope_scaling(factor):
    """The factors llama.cpp's converter writes for Llama 3.1/3.2 (head_dim 128, base 500000)
    become mlx-lm's llama3 rope scaling that computes the same factors."""
    from inference.gguf.archs.llama import llama3_factors, llama3_scaling
    from tests.gguf_files import LLAMA3_SCALING, rope_factors

    config = {"rope_scaling": {**LLAMA3_SCALING, "factor": factor}, "rope_theta": 500000.0, "head_dim": 128}
    written = rope_factors(config)
    scaling = llama3_scaling(written, 128, 500000.0)
    assert scaling["rope_type"] == "llama3" and scaling["factor"] == pytest.approx(factor)
    assert np.allclose(llama3_factors(128, 500000.0, scaling), written, rtol=1e-4)
    assert llama3_scaling(np.ones(64, dtype=np.float32), 128, 500000.0) is None


def test_a_rope_scaled_llama_file_matches_far_into_its_context(tmp_path):
    """At position ~1,500 the llama3-scaled low frequencies have turned: a file whose rope_freqs
    were ignored is 0.5 off here (measured); read back as mlx-lm's scaling it matches."""
    _, ours, reference = _both(tmp_path, "llama-rope-scaled", Q.Q8_0)
    ids = mx.array([[int(i) for i in np.random.default_rng(1).integers(0, 256, 1500)]])
    a, b = (np.array(m(ids).astype(mx.float32))[:, -50:] for m in (ours, reference))
    assert _relative(a, b) < 0.005
