"""POST /v1/completions: OpenAI's legacy text completions, and the answer's shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, model_validator

from inference.api.protocol.base import Bool, Int, explain, fail, parse
from inference.api.protocol.common import Sampling, Usage, omitted_when_none, texts_or_token_lists
from inference.requests import CompletionRequest

MAX_PROMPTS = 64

Prompt = Annotated[
    str | list[int] | list[str | list[int]],
    explain("must be a string, a list of strings, a list of token ids or a list of such lists."),
]


class CompletionsRequest(Sampling):
    missing = {**Sampling.missing, "prompt": "the text (or token ids) to continue."}

    prompt: Prompt
    echo: Bool = False
    logprobs: Int(0, 5) | None = None

    @model_validator(mode="after")
    def _prompt_rules(self):
        prompts = self.prompts()
        if not prompts:
            raise fail("Field 'prompt' is empty.")
        if len(prompts) > MAX_PROMPTS:
            raise fail(
                f"Field 'prompt' takes at most {MAX_PROMPTS} prompts; send the rest in another request."
            )
        for i, item in enumerate(prompts):
            if not item:
                raise fail("Field 'prompt' is empty." if len(prompts) == 1 else f"prompt[{i}] is empty.")
            if not isinstance(item, str) and min(item) < 0:
                raise fail(f"prompt[{i}] has a negative token id.")
        if self.echo and any(not isinstance(p, str) for p in prompts):
            raise fail("'echo' needs text prompts; token id prompts are not echoed.")
        return self

    def prompts(self) -> list:
        """One prompt per choice: each a string or a list of token ids."""
        return texts_or_token_lists(self.prompt)

    def to_completion_request(self) -> CompletionRequest:
        params = self.to_sampling_params()
        params.logprobs = self.logprobs
        return CompletionRequest(
            model=self.model.strip(),
            keep_alive=self.keep_alive,
            prompts=self.prompts(),
            stream=self.stream,
            include_usage=self.include_usage,
            params=params,
            echo=self.echo,
        )


def completion_request(data: dict) -> CompletionRequest:
    return parse(CompletionsRequest, data).to_completion_request()


# --- responses --------------------------------------------------------------------------------


class CompletionLogprobs(BaseModel):
    """OpenAI's legacy shape: parallel lists, and each token's text offset in the choice."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    """The whole answer, and each streamed chunk (OpenAI uses the one shape for both)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = omitted_when_none()
    stats: Any = omitted_when_none(description="LMX's timing: one object, or one per prompt.")
