"""POST /v1/chat/completions: the request as OpenAI documents it, and the answer's shapes."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from inference import grammars
from inference.api import tools
from inference.api.protocol.base import Bool, Int, Shape, explain, fail, parse
from inference.api.protocol.common import FunctionName, Sampling, Usage, omitted_when_none
from inference.requests import ChatRequest

ROLES = ("system", "user", "assistant", "tool", "developer")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")
MAX_TOOLS = 128


class TextPart(Shape):
    type: Literal["text"]
    text: str


class FunctionCallIn(Shape):
    name: str
    arguments: str = "{}"

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            if isinstance(json.loads(value), dict):
                return value
        except ValueError:
            pass
        raise fail("must be a JSON object as a string.")


class ToolCallIn(Shape):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class MessageIn(Shape):
    role: Annotated[
        Literal[ROLES], explain("{field} '{value}' is unknown; use one of " + ", ".join(ROLES) + ".")
    ]
    content: (
        Annotated[
            str | list[TextPart],
            explain(
                "{field} must be a string or a list of text parts {'type': 'text', 'text': '...'}; "
                "this model takes text only."
            ),
        ]
        | None
    ) = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    name: str | None = Field(None, description="Accepted and ignored: chat templates have no place for it.")

    @model_validator(mode="after")
    def _role_rules(self):
        if self.content is None and self.role != "assistant":
            raise fail("{field} has no 'content'.")
        if self.tool_calls is not None and self.role != "assistant":
            raise fail("{field}.tool_calls belongs on an assistant message.")
        if self.tool_call_id is not None and self.role != "tool":
            raise fail("{field}.tool_call_id belongs on a tool message.")
        return self

    def for_template(self) -> dict:
        """The message as chat templates read it."""
        content = self.content or ""
        out = {
            "role": "system" if self.role == "developer" else self.role,
            "content": content if isinstance(content, str) else "".join(p.text for p in content),
        }
        if self.tool_calls is not None:
            out["tool_calls"] = [
                {
                    "id": call.id or f"call_{j}",
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for j, call in enumerate(self.tool_calls)
            ]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class JsonSchemaSpec(Shape):
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: Bool | None = Field(None, description="Schemas are always enforced, whatever it says.")


class ResponseFormat(Shape):
    type: Annotated[
        Literal["text", "json_object", "json_schema"],
        explain("{field} '{value}' is not supported; use 'text', 'json_object' or 'json_schema'."),
    ]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self):
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise fail("{field}.json_schema goes with type 'json_schema': an object with 'schema'.")
        return self

    def grammar(self) -> str | None:
        """The format as an llguidance grammar, enforced token by token whatever `strict` says."""
        schema = self.json_schema.schema_ if self.json_schema else None
        return grammars.response_format(self.type, schema, where="response_format.json_schema.schema")


class FunctionIn(Shape):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: Bool | None = None


class ToolIn(Shape):
    type: Literal["function"]
    function: FunctionIn


class NamedFunction(Shape):
    name: str


class NamedToolChoice(Shape):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Annotated[
    Literal["none", "auto", "required"] | NamedToolChoice,
    explain(
        "must be 'none', 'auto', 'required' or a named function: "
        "{'type': 'function', 'function': {'name': ...}}."
    ),
]


class ChatCompletionRequest(Sampling):
    asks_nothing = {"functions": ([],)}
    missing = {**Sampling.missing, "messages": "a list of {role, content} objects."}

    messages: Annotated[list[MessageIn], Field(min_length=1)]
    max_completion_tokens: Int(1, 1_000_000) | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[ToolIn], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: Bool | None = None
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="Variables for the model's chat template, e.g. {'enable_thinking': false}."
    )
    reasoning_effort: Literal[REASONING_EFFORTS] | None = None
    logprobs: Bool = False
    top_logprobs: Int(0, 20) | None = None

    @model_validator(mode="after")
    def _chat_rules(self):
        if self.top_logprobs is not None and not self.logprobs:
            raise fail("Field 'top_logprobs' needs 'logprobs': true.")
        kwargs = self.chat_template_kwargs or {}
        if not all(k.isidentifier() for k in kwargs):
            raise fail("Field 'chat_template_kwargs' must be an object of template variables.")
        reserved = {"messages", "tools", "add_generation_prompt", "tokenize"} & set(kwargs)
        if reserved:
            raise fail(f"chat_template_kwargs may not set {', '.join(sorted(reserved))}.")
        return self

    def template_kwargs(self) -> dict:
        kwargs = dict(self.chat_template_kwargs or {})
        if self.reasoning_effort is not None:
            kwargs["reasoning_effort"] = self.reasoning_effort
        return kwargs

    def to_chat_request(self) -> ChatRequest:
        params = self.to_sampling_params(self.max_completion_tokens or self.max_tokens)
        params.logprobs = (self.top_logprobs or 0) if self.logprobs else None
        grammar = self.response_format.grammar() if self.response_format else None
        named = isinstance(self.tool_choice, NamedToolChoice)
        use = tools.tool_use(
            [t.function.model_dump(exclude_none=True, exclude={"strict"}) for t in self.tools or []],
            "named" if named else self.tool_choice,
            named=self.tool_choice.function.name if named else None,
            parallel=self.parallel_tool_calls is not False,
        )
        return ChatRequest(
            model=self.model.strip(),
            keep_alive=self.keep_alive,
            messages=[m.for_template() for m in self.messages],
            stream=self.stream,
            include_usage=self.include_usage,
            params=params,
            grammar=tools.output_grammar(use, grammar, format_field="response_format"),
            tools=use,
            template_kwargs=self.template_kwargs(),
        )


def chat_request(data: dict) -> ChatRequest:
    return parse(ChatCompletionRequest, data).to_chat_request()


# --- responses --------------------------------------------------------------------------------


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCall] | None = omitted_when_none()
    reasoning_content: str | None = omitted_when_none(description="What a reasoning model thought.")


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    stats: dict[str, Any] | None = omitted_when_none(description="LMX's timing of the request.")


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = omitted_when_none()
    type: Literal["function"] | None = omitted_when_none()
    function: dict[str, str]


class Delta(BaseModel):
    role: Literal["assistant"] | None = omitted_when_none()
    content: str | None = omitted_when_none()
    reasoning_content: str | None = omitted_when_none()
    tool_calls: list[ToolCallDelta] | None = omitted_when_none()


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = omitted_when_none()
