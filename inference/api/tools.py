"""OpenAI's tool-calling fields: `tools`, `tool_choice`, `parallel_tool_calls`, and the
`tool_calls` / `tool_call_id` of earlier turns, checked and turned into what the engine takes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from inference import grammars
from inference.api import fields
from inference.errors import InvalidRequest
from inference.wire import ToolCallFormat

NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 128


@dataclass
class ToolUse:
    functions: list[dict]  # {"name", "description"?, "parameters"?}
    format: ToolCallFormat
    grammar: str | None  # for `required` and a named function: the calls' JSON, enforced


def tool_use(data: dict) -> ToolUse | None:
    """What the request asks of tools; None when it offers none or `tool_choice` is "none"."""
    tools = data.get("tools")
    choice = data.get("tool_choice")
    parallel = data.get("parallel_tool_calls", True)
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequest("Field 'parallel_tool_calls' must be true or false.")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("Field 'tool_choice' asks for a tool call, but 'tools' offers none.")
        return None
    functions = _functions(tools)
    if choice is None or choice == "auto":
        return ToolUse(functions, ToolCallFormat.MARKED, None)
    if choice == "none":
        return None
    if choice == "required":
        one = (
            {"anyOf": [_call_schema(f) for f in functions]}
            if len(functions) > 1
            else _call_schema(functions[0])
        )
        schema = {"type": "array", "items": one, "minItems": 1} if parallel is not False else one
        return ToolUse(functions, ToolCallFormat.JSON, grammars.json_schema(schema, where="tools"))
    if isinstance(choice, dict):
        fields.refuse_unknown(
            choice, frozenset({"type", "function"}), ignored=frozenset(), where="tool_choice."
        )
        name = (
            (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
        )
        if choice.get("type") != "function" or not isinstance(name, str):
            raise InvalidRequest(
                "Field 'tool_choice' must name a function: {'type': 'function', 'function': {'name': ...}}."
            )
        chosen = [f for f in functions if f["name"] == name]
        if not chosen:
            raise InvalidRequest(f"tool_choice names '{name}', which is not among 'tools'.")
        return ToolUse(
            functions,
            ToolCallFormat.JSON,
            grammars.json_schema(_call_schema(chosen[0]), where=f"tools '{name}'"),
        )
    raise InvalidRequest("Field 'tool_choice' must be 'none', 'auto', 'required' or a named function.")


def _functions(tools) -> list[dict]:
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"Field 'tools' must be a list of at most {MAX_TOOLS} function tools.")
    out = []
    for i, tool in enumerate(tools):
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(tool.get("function"), dict)
        ):
            raise InvalidRequest(f"tools[{i}] must be {{'type': 'function', 'function': {{'name', ...}}}}.")
        fields.refuse_unknown(
            tool, frozenset({"type", "function"}), ignored=frozenset(), where=f"tools[{i}]."
        )
        function = tool["function"]
        fields.refuse_unknown(
            function,
            frozenset({"name", "description", "parameters", "strict"}),
            ignored=frozenset(),
            where=f"tools[{i}].function.",
        )
        name = function.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise InvalidRequest(f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'.")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(f"tools[{i}].function.parameters must be a JSON schema object.")
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequest(f"tools[{i}].function.description must be a string.")
        if name in (f["name"] for f in out):
            raise InvalidRequest(f"tools[{i}]: the function name '{name}' is given twice.")
        out.append(
            {
                k: v
                for k, v in (("name", name), ("description", description), ("parameters", parameters))
                if v is not None
            }
        )
    return out


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


def message_tool_fields(message: dict, index: int) -> dict:
    """The tool fields of one message of the chat: an assistant's `tool_calls`, a tool's
    `tool_call_id`, checked."""
    out = {}
    calls = message.get("tool_calls")
    if calls is not None:
        if message.get("role") != "assistant" or not isinstance(calls, list):
            raise InvalidRequest(f"messages[{index}].tool_calls belongs on an assistant message, as a list.")
        checked = []
        for j, call in enumerate(calls):
            where = f"messages[{index}].tool_calls[{j}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise InvalidRequest(
                    f"{where} must be {{'id', 'type': 'function', 'function': {{'name', 'arguments'}}}}."
                )
            arguments = function.get("arguments", "{}")
            try:
                if not isinstance(json.loads(arguments), dict):
                    raise ValueError
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(
                    f"{where}.function.arguments must be a JSON object as a string."
                ) from exc
            checked.append(
                {
                    "id": str(call.get("id") or f"call_{j}"),
                    "type": "function",
                    "function": {"name": function["name"], "arguments": arguments},
                }
            )
        out["tool_calls"] = checked
    call_id = message.get("tool_call_id")
    if call_id is not None:
        if message.get("role") != "tool" or not isinstance(call_id, str):
            raise InvalidRequest(f"messages[{index}].tool_call_id belongs on a tool message, as a string.")
        out["tool_call_id"] = call_id
    return out
