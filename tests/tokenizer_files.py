"""Vocabularies in GGUF files for tokenizer tests: a SentencePiece model trained here (byte
fallback, scores) written as llama.cpp's converter writes one, and a fixed multilingual list."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "Hello world",
    "The capital of France is Paris.",
    " leading space and  two spaces",
    "Numbers: 12345 and 3.14159",
    "naïve café, déjà vu",
    "Größenordnung über Äpfel",
    "Привет, как дела?",
    "日本語のテキストです。",
    "中文分词测试",
    "مرحبا بالعالم",
    "emoji 🙂🚀 and symbols <>{}[]",
    "tabs\tand\nnewlines\n\nend",
    "ελληνικά γράμματα",
    "मैं हिंदी बोलता हूँ",
]
# SentencePiece's types -> GGUF token types (llama.cpp: NORMAL 1, UNKNOWN 2, CONTROL 3, BYTE 6)
_CORPUS = SENTENCES * 3 + [
    "the quick brown fox jumps over the lazy dog",
    "a language model reads tokens and writes tokens",
    "les modèles de langue lisent des jetons",
    "Sprachmodelle lesen Token und schreiben Token",
]


def write_spm_gguf(folder: Path, *, vocab_size: int = 400):
    """(a llama-architecture .gguf with a SentencePiece vocabulary, the sentencepiece processor)."""
    import io

    import numpy as np
    import sentencepiece as spm
    from gguf import GGUFWriter

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        num_threads=1,
        # as Llama's and Mistral's tokenizer.model: text as written (llama.cpp normalizes nothing)
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
    types = [
        2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i) else 1
        for i in range(sp.get_piece_size())
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spm-vocab.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(pieces)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(True)
    writer.add_tensor("token_embd.weight", np.zeros((len(pieces), 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, sp
