"""Which request fields each endpoint honours. Any other field is refused with 400
`invalid-request` naming it: an agent that sends `tools` or `response_format` must hear that LMX
did not do it, never get prose back as if it had. A field sent as null, or with the value that
asks for nothing (`logprobs: false`, `tools: []`, `tool_choice: "none"`), is the same as absent.
"""

from __future__ import annotations

from inference.errors import InvalidRequest

# Accepted and ignored on purpose: they change nothing a local server computes (README lists them).
IGNORED = frozenset({"user", "store", "metadata", "service_tier", "safety_identifier", "prompt_cache_key"})
_SAMPLING = {
    "model",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "ignore_eos",  # vLLM's extension: generate to max_tokens (benchmarks)
}
CHAT = frozenset(
    {
        *_SAMPLING,
        "messages",
        "max_completion_tokens",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "chat_template_kwargs",
        "reasoning_effort",
        "logprobs",
        "top_logprobs",
    }
)
COMPLETIONS = frozenset({*_SAMPLING, "prompt", "echo", "logprobs"})
EMBEDDINGS = frozenset({"model", "input", "encoding_format", "dimensions"})
RERANK = frozenset({"model", "query", "documents", "top_n", "return_documents"})
STREAM_OPTIONS = frozenset({"include_usage"})
MESSAGE = frozenset({"role", "content", "tool_calls", "tool_call_id"})
MESSAGE_IGNORED = frozenset({"name"})  # a participant's name: chat templates have no place for it

_ASKS_NOTHING = {"logprobs": (False,), "functions": ([],)}


def _asks_nothing(name: str, value) -> bool:
    return value is None or any(
        value == off and type(value) is type(off) for off in _ASKS_NOTHING.get(name, ())
    )


def refuse_unknown(data: dict, honoured: frozenset, *, ignored: frozenset = IGNORED, where: str = "") -> None:
    """Raise InvalidRequest naming every field of `data` that is neither honoured nor ignored on
    purpose (`where` prefixes nested fields, e.g. "messages[2].")."""
    unknown = sorted(
        name
        for name, value in data.items()
        if name not in honoured and name not in ignored and not _asks_nothing(name, value)
    )
    if not unknown:
        return
    named = ", ".join(f"'{where}{name}'" for name in unknown)
    verb = "is" if len(unknown) == 1 else "are"
    raise InvalidRequest(
        f"Field{'s' if len(unknown) > 1 else ''} {named} {verb} not supported by LMX; remove "
        f"{'it' if len(unknown) == 1 else 'them'}. LMX refuses what it cannot honour rather than ignore it."
    )
