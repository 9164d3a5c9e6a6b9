"""Grammars for structured output, compiled and checked on the server side (llguidance; no MLX),
so a schema the engine could not follow is refused before the request reaches it."""

from __future__ import annotations

from llguidance import LLMatcher

from inference.errors import InvalidRequest

# Compact JSON: no whitespace between tokens, so a small model cannot stall in blank space.
JSON_OPTIONS = {"whitespace_flexible": False}


def json_schema(schema: dict, *, where: str) -> str:
    """The grammar of JSON values that follow `schema`; 400 naming the problem if it cannot be
    enforced (`where` names the field the schema came in)."""
    try:
        grammar = LLMatcher.grammar_from_json_schema(schema, overrides=JSON_OPTIONS)
    except ValueError as exc:
        raise InvalidRequest(f"{where} is not a JSON schema LMX can enforce: {exc}") from exc
    error = LLMatcher.validate_grammar(grammar)
    if error:
        raise InvalidRequest(f"{where} is not a JSON schema LMX can enforce: {error}")
    return grammar


def response_format(kind: str, schema: dict | None, *, where: str) -> str | None:
    """An API's output format as a grammar: "text" none, "json_object" any JSON object,
    "json_schema" `schema` (`where` names the field it came in)."""
    if kind == "json_object":
        return json_schema({"type": "object"}, where=where)
    if kind == "json_schema":
        return json_schema(schema, where=where)
    return None
