"""Tool calls out of a model's text (engine side, where the tokenizer knows its model's format).

A model whose chat template takes tools writes its calls between its own markers, read by its
family's parser from mlx-lm (`tokenizer.tool_parser`); any other model is shown LMX's generic
format (`GENERIC_*`, described to it by inference.engine.tokens) and its calls are JSON between
`<tool_call>` markers. With tool_choice `required` or a named function the whole output is the
call(s) as JSON, held to the tools' schemas by a grammar.
"""

from __future__ import annotations

import json
import logging
import uuid

from inference.engine.markers import MarkedSpans
from inference.wire import ToolCall, ToolCallFormat

log = logging.getLogger("lmx.engine")

GENERIC_START = "<tool_call>"
GENERIC_END = "</tool_call>"


def _json_call(text: str, tools=None):
    return json.loads(text.strip())


def _call(parsed) -> ToolCall:
    if not isinstance(parsed, dict) or not isinstance(parsed.get("name"), str):
        raise ValueError("a tool call needs a 'name'")
    arguments = parsed.get("arguments", {})
    if isinstance(arguments, str):  # some parsers keep the JSON text
        arguments = json.loads(arguments)
    return ToolCall(
        f"call_{uuid.uuid4().hex[:24]}", parsed["name"], json.dumps(arguments, ensure_ascii=False)
    )


def parse(text: str, parser, tools) -> list[ToolCall]:
    """The calls in one tool-call text; raises ValueError when it is not one."""
    try:
        parsed = parser(text, tools)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(str(exc)) from exc
    return [_call(item) for item in (parsed if isinstance(parsed, list) else [parsed])]


class ToolCallExtractor:
    """Splits a request's text stream into text to show and tool calls: `feed(text)` returns
    (text to emit now, calls completed now), `finish()` the rest. Text that may be the start of
    a marker is held back, as stop strings are."""

    def __init__(self, fmt: ToolCallFormat, tokenizer, tools):
        self.fmt = fmt
        self.tools = tools
        native = fmt is ToolCallFormat.MARKED and getattr(tokenizer, "has_tool_calling", False)
        self.start = tokenizer.tool_call_start if native else GENERIC_START
        self.end = tokenizer.tool_call_end if native else GENERIC_END
        self.parser = tokenizer.tool_parser if native else _json_call
        self.spans = MarkedSpans(self.start, self.end)
        self.call_text = ""  # the call being written (MARKED), or the whole output (JSON)
        self.made = 0

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        if self.fmt is ToolCallFormat.JSON:
            self.call_text += text  # the whole output is the call: parsed at the end
            return "", []
        return self._take(self.spans.feed(text))

    def finish(self) -> tuple[str, list[ToolCall]]:
        """What is left when the request ends: a call never closed is parsed if it can be."""
        if self.fmt is ToolCallFormat.JSON:
            return self._parse(self.call_text, raw=self.call_text)
        shown, calls = self._take(self.spans.flush())
        if self.spans.inside and self.call_text:
            back, made = self._parse(self.call_text, raw=self.start + self.call_text)
            shown, calls = shown + back, calls + made
        return shown, calls

    def _take(self, pieces) -> tuple[str, list[ToolCall]]:
        shown, calls = "", []
        for inside, piece in pieces:
            if piece is None:  # a marker: the end one closes a call
                if inside:
                    back, made = self._parse(self.call_text, raw=self.start + self.call_text + self.end)
                    shown, calls, self.call_text = shown + back, calls + made, ""
            elif inside:
                self.call_text += piece
            else:
                shown += piece
        return shown, calls

    def _parse(self, text: str, *, raw: str) -> tuple[str, list[ToolCall]]:
        """(text to show, calls): a text that is no call is shown as the model wrote it."""
        try:
            calls = parse(text, self.parser, self.tools)
        except ValueError as exc:
            log.warning("A tool call could not be parsed (%s); it is returned as text", exc)
            return raw, []
        if not calls:
            return raw, []
        self.made += len(calls)
        return "", calls
