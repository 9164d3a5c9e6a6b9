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
    """Splits a request's text stream into text to show and tool calls.

    `feed(text)` returns (text to emit now, calls completed now); `finish()` the rest. Text that
    may be the start of a marker is held back, as stop strings are."""

    def __init__(self, fmt: ToolCallFormat, tokenizer, tools):
        self.fmt = fmt
        self.tools = tools
        native = fmt is ToolCallFormat.MARKED and getattr(tokenizer, "has_tool_calling", False)
        self.start = tokenizer.tool_call_start if native else GENERIC_START
        self.end = tokenizer.tool_call_end if native else GENERIC_END
        self.parser = tokenizer.tool_parser if native else _json_call
        self.pending = ""  # text not yet emitted: a possible marker start, or a call in progress
        self.inside = False
        self.made = 0

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        self.pending += text
        if self.fmt is ToolCallFormat.JSON:
            return "", []  # the whole output is the call: parsed at the end
        shown, calls = "", []
        while True:
            if not self.inside:
                at = self.pending.find(self.start)
                if at < 0:
                    keep = _partial_suffix(self.pending, self.start)
                    shown += self.pending[: len(self.pending) - keep]
                    self.pending = self.pending[len(self.pending) - keep :]
                    return shown, calls
                shown += self.pending[:at]
                self.pending = self.pending[at + len(self.start) :]
                self.inside = True
            else:
                at = self.pending.find(self.end)
                if at < 0:
                    return shown, calls
                text_back, made = self._parse(
                    self.pending[:at], raw=self.start + self.pending[:at] + self.end
                )
                shown, calls = shown + text_back, calls + made
                self.pending = self.pending[at + len(self.end) :]
                self.inside = False

    def finish(self) -> tuple[str, list[ToolCall]]:
        """What is left when the request ends: a call never closed is parsed if it can be."""
        rest, self.pending = self.pending, ""
        if self.fmt is ToolCallFormat.JSON:
            return self._parse(rest, raw=rest)
        if self.inside:
            self.inside = False
            return self._parse(rest, raw=self.start + rest)
        return rest, []

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


def _partial_suffix(text: str, marker: str) -> int:
    """How many characters at the end of `text` could begin `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
