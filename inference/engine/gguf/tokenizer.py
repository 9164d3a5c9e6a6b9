"""A GGUF file's tokenizer as a Hugging Face `tokenizers` object, built by transformers' GGUF
tokenizer converters (byte-level BPE with the file's pre-tokenizer; SentencePiece with scores,
byte fallback and the prefix space, with the Gemma and Phi-3 variants llama.cpp has)."""

from __future__ import annotations

from pathlib import Path

from inference.gguf.archs import TOKENIZER_MODELS
from inference.gguf.reader import GGUFError, GGUFFile


def tokenizer_dict(f: GGUFFile) -> tuple[dict, dict]:
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING

    tokens, config = (
        {
            name: f.get(f"tokenizer.{key}")
            for key, name in GGUF_TOKENIZER_MAPPING[group].items()
            if f.has(f"tokenizer.{key}")
        }
        for group in ("tokenizer", "tokenizer_config")
    )
    kind = tokens.get("tokenizer_type")
    if kind not in TOKENIZER_MODELS:  # a file that did not go through its architecture's plan
        raise GGUFError(f"GGUF tokenizer type '{kind}' is not supported", kind="unsupported")
    if kind == "gpt2":
        tokens.setdefault("merges", [])  # a byte vocabulary without merges writes none
    if kind == "llama":
        config.setdefault("add_bos_token", True)  # llama.cpp's default for SentencePiece files
    return tokens, config


def write(f: GGUFFile, out_dir: Path) -> None:
    """tokenizer.json + tokenizer_config.json (with the file's chat template) in `out_dir`."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

    tokens, config = tokenizer_dict(f)
    try:
        backend, _ = convert_gguf_tokenizer(f.architecture, tokens)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise GGUFError(f"the file's vocabulary cannot be built into a tokenizer: {exc}") from exc
    if tokens["tokenizer_type"] == "llama":
        _escape_spaces_as_llama_cpp(backend, tokens, f.architecture)
    vocab = tokens["tokens"]

    def token_at(key: str):
        index = f.get(f"tokenizer.ggml.{key}")
        return vocab[index] if isinstance(index, int) and 0 <= index < len(vocab) else None

    fast = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=token_at("bos_token_id"),
        eos_token=token_at("eos_token_id"),
        unk_token=token_at("unknown_token_id"),
        pad_token=token_at("padding_token_id"),
        add_bos_token=bool(config.get("add_bos_token", False)),
        add_eos_token=bool(config.get("add_eos_token", False)),
        clean_up_tokenization_spaces=False,
    )
    if config.get("chat_template"):
        fast.chat_template = str(config["chat_template"])
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))


def _escape_spaces_as_llama_cpp(backend, tokens: dict, architecture: str) -> None:
    """SentencePiece as llama.cpp runs it: every space is '▁' and, with add_space_prefix (the
    default), one more '▁' starts the text even when the text starts with a space (transformers'
    Metaspace skips it there, as SentencePiece and llama.cpp do not)."""
    from tokenizers import normalizers
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_SENTENCEPIECE_BUILDERS

    if architecture in GGUF_SENTENCEPIECE_BUILDERS:  # Gemma and Phi-3 have their own builders
        return
    steps = [normalizers.Replace(" ", "\u2581")]
    if tokens.get("add_prefix_space", True):
        steps.insert(0, normalizers.Prepend("\u2581"))
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = None
