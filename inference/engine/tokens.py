"""Prompt text to token ids with the loaded model's tokenizer (engine side)."""

from __future__ import annotations

from inference.errors import InvalidRequest
from inference.wire import TokenizeKind


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


def tokenize(tokenizer, kind: TokenizeKind, payload):
    """Token ids of `payload` as `kind` says (inference.wire.TokenizeKind)."""
    if kind == TokenizeKind.CHAT:
        return tokenize_chat(tokenizer, payload)
    if kind == TokenizeKind.TEXT:
        return list(tokenizer.encode(payload))
    if kind == TokenizeKind.TEXTS:
        return [list(tokenizer.encode(text)) for text in payload]
    raise ValueError(f"unknown tokenize kind {kind!r}")
