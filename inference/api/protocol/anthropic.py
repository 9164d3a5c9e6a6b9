"""POST /v1/messages and /v1/messages/count_tokens as Anthropic documents them, and the answer's
shapes (non-streamed and the streamed events)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from inference import grammars
from inference.api import tools
from inference.api.protocol.base import (
    KEEP_ALIVE_FIELD,
    Bool,
    Int,
    KeepAlive,
    Number,
    Shape,
    explain,
    fail,
    parse,
)
from inference.api.protocol.common import MAX_STOP, MAX_TOKENS_CAP, FunctionName, ModelName
from inference.errors import InvalidRequest
from inference.requests import ChatRequest, SamplingParams

EFFORTS = ("low", "medium", "high", "max")


class CacheControl(Shape):
    type: Literal["ephemeral"]
    ttl: str | None = None


class TextBlock(Shape):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = Field(None, description="Accepted: LMX caches every prefix.")
    citations: list[Any] | None = None


class ToolUseBlock(Shape):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(Shape):
    type: Literal["tool_result"]
    tool_use_id: str
    content: Annotated[str | list[TextBlock], explain("{field} must be a string or text blocks.")] = ""
    is_error: Bool = False
    cache_control: CacheControl | None = None

    def text(self) -> str:
        body = self.content if isinstance(self.content, str) else "".join(b.text for b in self.content)
        return f"Error: {body}" if self.is_error else body


class ThinkingBlock(Shape):
    """An earlier turn's thinking: chat templates drop it from the history, as LMX does."""

    type: Literal["thinking"]
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(Shape):
    type: Literal["redacted_thinking"]
    data: str


Block = Annotated[
    TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock,
    Field(discriminator="type"),
]


class Message(Shape):
    role: Annotated[
        Literal["user", "assistant"], explain("{field} '{value}' is unknown; use 'user' or 'assistant'.")
    ]
    content: str | list[Block]

    def for_template(self, index: int) -> list[dict]:
        """The turn as chat templates read it: tool results become `tool` messages (before the
        user's text), an assistant's tool_use blocks its `tool_calls`."""
        if isinstance(self.content, str):
            return [{"role": self.role, "content": self.content}]
        text = "".join(b.text for b in self.content if isinstance(b, TextBlock))
        if self.role == "user":
            if any(isinstance(b, ToolUseBlock | ThinkingBlock | RedactedThinkingBlock) for b in self.content):
                raise InvalidRequest(
                    f"messages[{index}]: a user turn carries text and tool_result blocks only."
                )
            out = [
                {"role": "tool", "tool_call_id": b.tool_use_id, "content": b.text()}
                for b in self.content
                if isinstance(b, ToolResultBlock)
            ]
            return out + ([{"role": "user", "content": text}] if text or not out else [])
        if any(isinstance(b, ToolResultBlock) for b in self.content):
            raise InvalidRequest(f"messages[{index}]: tool_result blocks belong in a user turn.")
        message = {"role": "assistant", "content": text}
        calls = [
            {
                "id": b.id,
                "type": "function",
                "function": {"name": b.name, "arguments": json.dumps(b.input)},
            }
            for b in self.content
            if isinstance(b, ToolUseBlock)
        ]
        if calls:
            message["tool_calls"] = calls
        return [message]


class Tool(Shape):
    name: FunctionName
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: CacheControl | None = None


class ToolChoice(Shape):
    type: Annotated[
        Literal["auto", "any", "tool", "none"],
        explain("{field} '{value}' is not supported; use 'auto', 'any', 'tool' or 'none'."),
    ]
    name: str | None = None
    disable_parallel_tool_use: Bool | None = None

    @model_validator(mode="after")
    def _named(self):
        if (self.type == "tool") != (self.name is not None):
            raise fail("{field}.name goes with type 'tool' (and only with it).")
        return self


class Thinking(Shape):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Int(1, MAX_TOKENS_CAP) | None = Field(
        None, description="Accepted; LMX does not cut thinking short at the budget (README)."
    )


class OutputFormat(Shape):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(Shape):
    format: OutputFormat | None = None
    effort: (
        Annotated[Literal[EFFORTS], explain("must be one of 'low', 'medium', 'high' or 'max'.")] | None
    ) = None


class Metadata(Shape):
    user_id: str | None = Field(None, description="Accepted and ignored on purpose.")


class Conversation(Shape):
    """What count_tokens and a message share: the model, the turns and the tools."""

    missing = {
        "model": "name the loaded model (see GET /v1/models).",
        "messages": "a list of {role, content} turns.",
        "max_tokens": "Anthropic's API requires it: the most tokens to generate.",
    }

    keep_alive: KeepAlive | None = KEEP_ALIVE_FIELD
    model: ModelName
    messages: Annotated[list[Message], Field(min_length=1)]
    system: Annotated[str | list[TextBlock], explain("must be a string or a list of text blocks.")] | None = (
        None
    )
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None

    def chat_messages(self) -> list[dict]:
        out = []
        if self.system:
            text = self.system if isinstance(self.system, str) else "".join(b.text for b in self.system)
            out.append({"role": "system", "content": text})
        for i, message in enumerate(self.messages):
            out += message.for_template(i)
        return out

    def template_kwargs(self) -> dict:
        kwargs = {}
        if self.thinking is not None:
            kwargs["enable_thinking"] = self.thinking.type != "disabled"
        if self.output_config is not None and self.output_config.effort is not None:
            kwargs["reasoning_effort"] = self.output_config.effort
        return kwargs

    def tool_use(self):
        choice = self.tool_choice
        kind = (
            {"auto": "auto", "any": "required", "tool": "named", "none": "none"}[choice.type]
            if choice
            else None
        )
        functions = [
            {
                k: v
                for k, v in (("name", t.name), ("description", t.description), ("parameters", t.input_schema))
                if v
            }
            for t in self.tools or []
        ]
        parallel = not (choice and choice.disable_parallel_tool_use)
        return tools.tool_use(functions, kind, named=choice.name if choice else None, parallel=parallel)

    def grammar(self) -> str | None:
        if self.output_config is None or self.output_config.format is None:
            return None
        return grammars.json_schema(self.output_config.format.schema_, where="output_config.format.schema")

    def to_chat_request(self, params: SamplingParams, *, stream: bool = False) -> ChatRequest:
        use = self.tool_use()
        grammar = self.grammar()
        return ChatRequest(
            model=self.model.strip(),
            keep_alive=self.keep_alive,
            messages=self.chat_messages(),
            stream=stream,
            include_usage=True,
            params=params,
            grammar=tools.output_grammar(use, grammar, format_field="output_config.format"),
            tools=use,
            template_kwargs=self.template_kwargs(),
        )


class CountTokensRequest(Conversation):
    pass


class MessagesRequest(Conversation):
    max_tokens: Int(1, MAX_TOKENS_CAP)
    stop_sequences: Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    stream: Bool = False
    temperature: Number(0, 1) = 1.0
    top_p: Number(0, 1) | None = None
    top_k: Int(1, 1_000_000) | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = Field(
        None, description="Accepted and ignored on purpose."
    )

    def to_sampling_params(self) -> SamplingParams:
        return SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p if self.top_p is not None else 1.0,
            top_k=self.top_k or 0,
            stop=[s for s in self.stop_sequences or [] if s],
        )


def messages_request(data: dict) -> ChatRequest:
    req = parse(MessagesRequest, data)
    return req.to_chat_request(req.to_sampling_params(), stream=req.stream)


def count_tokens_request(data: dict) -> ChatRequest:
    return parse(CountTokensRequest, data).to_chat_request(SamplingParams(max_tokens=1))


# --- responses --------------------------------------------------------------------------------


class MessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ThinkingContent(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""


class ToolUseContent(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class MessageResponse(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[ThinkingContent | TextContent | ToolUseContent]
    model: str
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: MessageUsage


class InputTokens(BaseModel):
    input_tokens: int


class AnthropicErrorDetail(BaseModel):
    type: Literal[
        "invalid_request_error", "authentication_error", "not_found_error", "overloaded_error", "api_error"
    ]
    message: str


class AnthropicError(BaseModel):
    type: Literal["error"] = "error"
    error: AnthropicErrorDetail
