"""The OpenAI fields chat and completions share: the model, sampling, streaming and usage."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator

from inference.api.protocol.base import Bool, Int, Number, Request, Shape, explain, fail
from inference.requests import SamplingParams

MAX_STOP = 16
MAX_TOKENS_CAP = 1_000_000

FunctionName = Annotated[
    str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$"), explain("must be 1-64 letters, digits, '_' or '-'.")
]
ModelName = Annotated[
    str,
    Field(min_length=1, max_length=300, pattern=r"\S"),
    explain("must be a non-empty string of at most 300 characters."),
]


class StreamOptions(Shape):
    include_usage: Bool = False


class Sampling(Request):
    missing = {"model": "name the loaded model (see GET /v1/models)."}

    model: ModelName
    stream: Bool = False
    stream_options: StreamOptions | None = None
    temperature: Number(0, 2) = 0.7
    top_p: Number(0, 1) = 1.0
    max_tokens: Int(1, MAX_TOKENS_CAP) | None = None
    stop: Annotated[str | list[str], explain("must be a string or a list of strings.")] | None = None
    seed: Int(-(2**63), 2**64 - 1) | None = None
    n: Int(1, 128) = 1
    presence_penalty: Number(-2, 2) | None = None
    frequency_penalty: Number(-2, 2) | None = None
    logit_bias: dict[str, Number(-100, 100)] | None = Field(None, description="token id -> bias")
    ignore_eos: Bool = Field(False, description="vLLM's extension: generate to max_tokens (benchmarks).")

    @model_validator(mode="after")
    def _sampling_rules(self):
        if self.n != 1:
            raise fail("Only n=1 is supported: send one request per completion.")
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP:
            raise fail(f"Field 'stop' takes at most {MAX_STOP} strings.")
        for key in self.logit_bias or {}:
            if not key.lstrip("-").isdigit():
                raise fail(f"logit_bias key '{key}' is not a token id.")
        if self.stream_options is not None and not self.stream:
            raise fail("'stream_options' is only allowed when 'stream' is true.")
        return self

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def to_sampling_params(self, max_tokens: int | None = None) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingParams(
            max_tokens=max_tokens if max_tokens is not None else self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=None if self.seed is None else self.seed % (2**63),
            stop=[s for s in stops if s],
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias={int(k): v for k, v in self.logit_bias.items()} if self.logit_bias else None,
            ignore_eos=self.ignore_eos,
        )


def texts_or_token_lists(value: str | list) -> list:
    """OpenAI's `prompt` / `input`: a string or a token id list is one item, a list of those many."""
    if isinstance(value, str) or (value and isinstance(value[0], int)):
        return [value]
    return list(value)


# --- responses --------------------------------------------------------------------------------


def omitted_when_none(**field) -> Any:
    """A response field left out of the body when it has no value (OpenAI omits it too)."""
    return Field(None, exclude_if=lambda value: value is None, **field)


class CachedTokens(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: CachedTokens = CachedTokens()


class ErrorDetail(BaseModel):
    code: str = Field(description="The SPEC's error code, e.g. invalid-request, model-not-found.")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
