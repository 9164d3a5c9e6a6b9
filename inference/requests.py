"""What serving takes, whichever API dialect a request came in: the OpenAI, Anthropic and
Responses protocol models each turn their body into one of these."""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.wire import ToolCallFormat


@dataclass
class SamplingParams:
    max_tokens: int | None
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    ignore_eos: bool = False
    logprobs: int | None = None  # report log-probabilities, with this many alternatives a token
    top_k: int = 0  # 0: every token (Anthropic's top_k)


@dataclass
class ToolUse:
    functions: list[dict]  # {"name", "description"?, "parameters"?}
    format: ToolCallFormat
    grammar: str | None  # for `required` and a named function: the calls' JSON, enforced


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]  # {"role", "content", "tool_calls"?, "tool_call_id"?}, roles as templates take them
    stream: bool
    include_usage: bool
    params: SamplingParams
    grammar: str | None = None  # from response_format or tool_choice: what the output must follow
    tools: ToolUse | None = None
    template_kwargs: dict = field(default_factory=dict)  # for the chat template (thinking, effort)
    keep_alive: float | None = None  # seconds the model stays after this request (-1: forever)


@dataclass
class CompletionRequest:
    model: str
    prompts: list  # each a string or a list of token ids: one choice per prompt, in order
    stream: bool
    include_usage: bool
    params: SamplingParams
    echo: bool = False
    token_lists: list | None = None  # each prompt's tokens, once serving has them
    keep_alive: float | None = None

    @property
    def prompt(self):
        return self.prompts[0]


@dataclass
class EmbeddingRequest:
    model: str
    inputs: list  # texts, or token id lists
    encoding_format: str
    dimensions: int | None
    keep_alive: float | None = None


@dataclass
class RerankRequest:
    model: str
    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool
    keep_alive: float | None = None
