"""POST /v1/responses as OpenAI documents it (what Codex and the Agents SDK send), and the
response object. Streamed events are built by the consumer from the same item shapes."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from inference import grammars
from inference.api import tools
from inference.api.protocol.base import Bool, Int, Number, Request, Shape, explain, fail, parse
from inference.api.protocol.chat import REASONING_EFFORTS, FunctionIn
from inference.api.protocol.common import MAX_TOKENS_CAP, ModelName
from inference.requests import ChatRequest, SamplingParams


class InputText(Shape):
    type: Literal["input_text", "output_text", "text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class MessageItem(Shape):
    type: Literal["message"] | None = None
    role: Annotated[
        Literal["user", "assistant", "system", "developer"],
        explain("{field} '{value}' is unknown; use 'user', 'assistant', 'system' or 'developer'."),
    ]
    content: Annotated[
        str | list[InputText],
        explain("{field} must be a string or a list of input_text parts; this model takes text only."),
    ]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(Shape):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None

    @model_validator(mode="after")
    def _json(self):
        try:
            if isinstance(json.loads(self.arguments), dict):
                return self
        except ValueError:
            pass
        raise fail("{field}.arguments must be a JSON object as a string.")


class FunctionCallOutputItem(Shape):
    type: Literal["function_call_output"]
    call_id: str
    output: Annotated[str | list[InputText], explain("{field} must be a string or text parts.")]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


class ReasoningItem(Shape):
    """An earlier turn's reasoning: chat templates drop it from the history, as LMX does."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[Any] = []
    content: list[Any] | None = None
    encrypted_content: str | None = None
    status: str | None = None


def _item_kind(value: Any) -> str:
    return value.get("type", "message") if isinstance(value, dict) else "message"


Item = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_kind),
]


class FunctionTool(FunctionIn):
    """A function tool: chat's function, flattened beside its `type`."""

    type: Literal["function"]


class FunctionChoice(Shape):
    type: Literal["function"]
    name: str


class TextFormat(Shape):
    type: Annotated[
        Literal["text", "json_object", "json_schema"],
        explain("{field} '{value}' is not supported; use 'text', 'json_object' or 'json_schema'."),
    ]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: Bool | None = None

    @model_validator(mode="after")
    def _schema(self):
        if (self.type == "json_schema") != (self.schema_ is not None):
            raise fail("{field}.schema goes with type 'json_schema' (and only with it).")
        return self


class TextConfig(Shape):
    format: TextFormat | None = None


class Reasoning(Shape):
    effort: Literal[REASONING_EFFORTS] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = Field(
        None, description="Accepted: the reasoning comes whole, as reasoning_text."
    )


class ResponsesRequest(Request):
    missing = {
        "model": "name the loaded model (see GET /v1/models).",
        "input": "a string or a list of items.",
    }
    asks_nothing = {"include": ([],), "truncation": ("disabled",), "background": (False,)}

    model: ModelName
    input: str | Annotated[list[Item], Field(min_length=1)]
    instructions: str | None = None
    previous_response_id: str | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None
    tool_choice: (
        Annotated[
            Literal["none", "auto", "required"] | FunctionChoice,
            explain("must be 'none', 'auto', 'required' or {'type': 'function', 'name': ...}."),
        ]
        | None
    ) = None
    parallel_tool_calls: Bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: Int(1, MAX_TOKENS_CAP) | None = None
    temperature: Number(0, 2) = 1.0
    top_p: Number(0, 1) = 1.0
    stream: Bool = False
    store: Bool = Field(
        True, description="Keep the response, for previous_response_id and GET /v1/responses/{id}."
    )

    def items(self) -> list:
        return [MessageItem(role="user", content=self.input)] if isinstance(self.input, str) else self.input

    def conversation(self) -> list[dict]:
        """This request's input as chat messages (no instructions): function calls join the
        assistant turn before them, their outputs become `tool` messages."""
        out: list[dict] = []
        for item in self.items():
            if isinstance(item, MessageItem):
                role = "system" if item.role == "developer" else item.role
                out.append({"role": role, "content": item.text()})
            elif isinstance(item, FunctionCallItem):
                call = {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments},
                }
                if out and out[-1]["role"] == "assistant":
                    out[-1].setdefault("tool_calls", []).append(call)
                else:
                    out.append({"role": "assistant", "content": "", "tool_calls": [call]})
            elif isinstance(item, FunctionCallOutputItem):
                out.append({"role": "tool", "tool_call_id": item.call_id, "content": item.text()})
        return out

    def grammar(self) -> str | None:
        fmt = self.text.format if self.text else None
        if fmt is None:
            return None
        return grammars.response_format(fmt.type, fmt.schema_, where="text.format.schema")

    def to_chat_request(self, history: list[dict]) -> ChatRequest:
        """`history`: the stored conversation `previous_response_id` continues (or [])."""
        named = isinstance(self.tool_choice, FunctionChoice)
        use = tools.tool_use(
            [t.model_dump(exclude_none=True, exclude={"type", "strict"}) for t in self.tools or []],
            "named" if named else self.tool_choice,
            named=self.tool_choice.name if named else None,
            parallel=self.parallel_tool_calls is not False,
        )
        grammar = self.grammar()
        messages = ([{"role": "system", "content": self.instructions}] if self.instructions else []) + [
            *history,
            *self.conversation(),
        ]
        kwargs = (
            {"reasoning_effort": self.reasoning.effort} if self.reasoning and self.reasoning.effort else {}
        )
        return ChatRequest(
            model=self.model.strip(),
            keep_alive=self.keep_alive,
            messages=messages,
            stream=self.stream,
            include_usage=True,
            params=SamplingParams(
                max_tokens=self.max_output_tokens, temperature=self.temperature, top_p=self.top_p
            ),
            grammar=tools.output_grammar(use, grammar, format_field="text.format"),
            tools=use,
            template_kwargs=kwargs,
        )


def responses_request(data: dict) -> ResponsesRequest:
    return parse(ResponsesRequest, data)


# --- the response object ----------------------------------------------------------------------


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class ReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class OutputReasoning(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[Any] = []
    content: list[ReasoningText] = []
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseObject(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["completed", "incomplete", "in_progress", "failed"]
    error: dict[str, Any] | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputReasoning | OutputMessage | OutputFunctionCall]
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool = True
    temperature: float
    text: dict[str, Any] = {"format": {"type": "text"}}
    tool_choice: Any = "auto"
    tools: list[dict[str, Any]] = []
    top_p: float
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    metadata: dict[str, Any] = {}


class Deleted(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True
