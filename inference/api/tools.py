"""What a request asks of tools, as the engine takes it: the functions offered, the format a call
comes in, and, for `required` or a named function, the grammar that holds the output to a call.
Each API dialect (chat completions, Anthropic Messages, Responses) maps its fields onto this."""

from __future__ import annotations

from inference import grammars
from inference.errors import InvalidRequest
from inference.requests import ToolUse
from inference.wire import ToolCallFormat

__all__ = ["InvalidRequest", "ToolUse", "output_grammar", "tool_use"]


def tool_use(
    functions: list[dict], choice: str | None, *, named: str | None = None, parallel: bool = True
) -> ToolUse | None:
    """`functions` ({"name", "description"?, "parameters"?}); `choice` "auto" (or None), "none",
    "required", or "named" with `named` the function. None when no tool may be called."""
    if not functions:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("Field 'tool_choice' asks for a tool call, but 'tools' offers none.")
        return None
    seen = set()
    for i, function in enumerate(functions):
        if function["name"] in seen:
            raise InvalidRequest(f"tools[{i}]: the function name '{function['name']}' is given twice.")
        seen.add(function["name"])
    if choice in (None, "auto"):
        return ToolUse(functions, ToolCallFormat.MARKED, None)
    if choice == "none":
        return None
    if choice == "required":
        one = (
            {"anyOf": [_call_schema(f) for f in functions]}
            if len(functions) > 1
            else _call_schema(functions[0])
        )
        schema = {"type": "array", "items": one, "minItems": 1} if parallel else one
        return ToolUse(functions, ToolCallFormat.JSON, grammars.json_schema(schema, where="tools"))
    chosen = [f for f in functions if f["name"] == named]
    if not chosen:
        raise InvalidRequest(f"tool_choice names '{named}', which is not among 'tools'.")
    return ToolUse(
        functions,
        ToolCallFormat.JSON,
        grammars.json_schema(_call_schema(chosen[0]), where=f"tools '{named}'"),
    )


def output_grammar(use: ToolUse | None, grammar: str | None, *, format_field: str) -> str | None:
    """What the output must follow: the format's grammar (`format_field`), or a required call's.
    Both at once is refused: the output cannot be a call and the format's JSON at once."""
    if use is not None and grammar is not None:
        raise InvalidRequest(
            f"'{format_field}' and 'tools' cannot be combined here: send tool_choice 'none' to get the format."
        )
    return grammar or (use and use.grammar)


def _call_schema(function: dict) -> dict:
    return {
        "type": "object",
        "properties": {
            "name": {"const": function["name"]},
            "arguments": function.get("parameters") or {"type": "object"},
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
