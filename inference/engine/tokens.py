"""Prompt text to token ids with the loaded model's tokenizer (engine side)."""

from __future__ import annotations

import json

from inference.engine.tool_calls import GENERIC_END, GENERIC_START
from inference.errors import InvalidRequest
from inference.wire import TokenizeKind, ToolCallFormat


def tokenize_chat(
    tokenizer, messages: list[dict], tools: list[dict] | None = None, tool_format=None, template_kwargs=None
) -> list[int]:
    """The chat template's prompt. Tools go through the template where it takes them (mlx-lm
    found its model family's tool-call format); any other model is told LMX's generic format in
    its system message, and earlier calls in the chat are written in that format."""
    native = bool(tools) and getattr(tokenizer, "has_tool_calling", False)
    if native:
        messages = [_native(m) for m in messages]
    else:
        messages = [_generic(m) for m in messages]
        if tools:
            messages = _describe_tools(messages, tools, tool_format)
    if getattr(tokenizer, "chat_template", None) is None and not getattr(
        tokenizer, "has_chat_template", False
    ):
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return list(tokenizer.encode(text))
    extra = dict(template_kwargs or {})  # chat_template_kwargs, reasoning_effort
    if native:
        extra["tools"] = [{"type": "function", "function": f} for f in tools]
    try:
        return list(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, **extra)
        )
    except Exception as exc:  # templates raise on e.g. role orders they forbid
        raise InvalidRequest(f"The model's chat template rejected these messages: {exc}") from exc


def _native(message: dict) -> dict:
    """Tool calls as chat templates read them: arguments as objects, not JSON text."""
    if not message.get("tool_calls"):
        return message
    calls = [
        {**call, "function": {**call["function"], "arguments": json.loads(call["function"]["arguments"])}}
        for call in message["tool_calls"]
    ]
    return {**message, "tool_calls": calls}


def _generic(message: dict) -> dict:
    """A message as a template without tool support renders it: calls written into the text."""
    calls = message.get("tool_calls")
    out = {"role": message["role"], "content": message["content"]}
    if calls:
        out["content"] += "".join(
            GENERIC_START
            + json.dumps({"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])})
            + GENERIC_END
            for c in calls
        )
    return out


def _describe_tools(messages: list[dict], tools: list[dict], tool_format) -> list[dict]:
    lines = ["You can call these tools (functions):"]
    for tool in tools:
        lines.append(f"- {tool['name']}: {tool.get('description', '')}".rstrip(": "))
        lines.append(
            f"  parameters (JSON schema): {json.dumps(tool.get('parameters') or {'type': 'object'})}"
        )
    if tool_format == ToolCallFormat.JSON:
        lines.append('Reply with the call only, as JSON: {"name": "<tool name>", "arguments": {...}}')
    else:
        lines.append(
            f'To call a tool, reply with {GENERIC_START}{{"name": "<tool name>", "arguments": {{...}}}}{GENERIC_END}; '
            "otherwise answer normally."
        )
    described = "\n".join(lines)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + described}, *messages[1:]]
    return [{"role": "system", "content": described}, *messages]


def tokenize(tokenizer, kind: TokenizeKind, payload):
    """Token ids of `payload` as `kind` says (inference.wire.TokenizeKind). CHAT takes the
    messages, or {"messages", "tools", "tool_format"}."""
    if kind == TokenizeKind.CHAT:
        if isinstance(payload, dict):
            return tokenize_chat(
                tokenizer,
                payload["messages"],
                payload.get("tools"),
                payload.get("tool_format"),
                payload.get("template_kwargs"),
            )
        return tokenize_chat(tokenizer, payload)
    if kind == TokenizeKind.TEXT:
        return list(tokenizer.encode(payload))
    if kind == TokenizeKind.TEXTS:
        return [list(tokenizer.encode(text)) for text in payload]
    raise ValueError(f"unknown tokenize kind {kind!r}")
