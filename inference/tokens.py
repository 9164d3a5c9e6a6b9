"""Prompt text to token ids with the loaded model's tokenizer (in the engine process)."""

from __future__ import annotations

from inference.errors import InvalidRequest


def tokenize_chat(tokenizer, messages: list[dict]) -> list[int]:
    if getattr(tokenizer, "chat_template", None) is None and not getattr(
        tokenizer, "has_chat_template", False
    ):
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return list(tokenizer.encode(text))
    try:
        return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    except Exception as exc:  # templates raise on e.g. role orders they forbid
        raise InvalidRequest(f"The model's chat template rejected these messages: {exc}") from exc


def tokenize(tokenizer, kind: str, payload):
    """`chat`: messages -> ids; `text`: a string -> ids; `texts`: strings -> a list of ids each."""
    if kind == "chat":
        return tokenize_chat(tokenizer, payload)
    if kind == "text":
        return list(tokenizer.encode(payload))
    if kind == "texts":
        return [list(tokenizer.encode(text)) for text in payload]
    raise ValueError(f"unknown tokenize kind {kind!r}")
