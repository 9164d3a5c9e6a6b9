"""Texts too long for a model's context, refused before the engine tokenizes them."""

from __future__ import annotations

from inference.errors import InvalidRequest


def text_bytes(value) -> int:
    """UTF-8 bytes of every string in a JSON-like value (keys included)."""
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return sum(text_bytes(k) + text_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(text_bytes(v) for v in value)
    return 0


def refuse_too_long(value, loaded, what: str = "The prompt") -> None:
    """A text that could not fit the context whatever it tokenizes to, refused before it is
    tokenized (a 4 MB prompt took the engine 3 s and 400 MB to refuse): no token covers more
    than the vocabulary's longest, so `context x longest` bytes (doubled, for normalizers that
    lengthen text) bound any prompt that fits."""
    if not loaded.max_token_bytes:
        return
    limit = loaded.context_length * loaded.max_token_bytes * 2
    size = text_bytes(value)
    if size > limit:
        raise InvalidRequest(
            f"{what} is {size} bytes: more than the model's context length of {loaded.context_length} "
            f"tokens can hold (at most {limit} bytes). Shorten it."
        )
