"""What travels between the server and the engine: typed commands, events and replies.

The server side imports this module and a client (inference.client), never the engine package:
nothing here imports MLX. Every message is a frozen dataclass; receivers dispatch on its type.
docs/ARCHITECTURE.md draws the two processes and this wire between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from inference.errors import LMXError
from inference.store import ModelSpec

# --- what a generation asks and what it reports --------------------------------------------


@dataclass
class GenerationRequest:
    prompt_tokens: list[int]
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0  # 0: every token
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[int, float] | None = None
    timeout_s: float | None = None
    ignore_eos: bool = False
    grammar: str | None = None  # llguidance grammar the output must follow (structured output)
    tool_format: ToolCallFormat | None = None  # how tool calls show in the output, if asked for
    tools: list[dict] | None = None  # the functions offered (some model families' parsers read them)
    split_reasoning: bool = False  # a chat: thinking-marker text goes to Reasoning events
    logprobs: int | None = None  # report each token's log-probability and this many alternatives


class ToolCallFormat(StrEnum):
    MARKED = "marked"  # between the model's tool-call markers, amid text (tool_choice auto)
    JSON = "json"  # the whole output is the call(s) as JSON, constrained by a grammar (required, named)


class FinishReason(StrEnum):
    STOP = "stop"  # end of sequence or a stop string
    LENGTH = "length"  # max_tokens reached
    TOOL_CALLS = "tool_calls"  # the answer is one or more tool calls


@dataclass
class Stats:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    time_to_first_token_ms: float | None
    prompt_tokens_per_second: float | None
    tokens_per_second: float | None
    total_ms: float
    prompt_cache: dict | None = None  # tier, cached_tokens, reason; where a prompt left the cache

    def as_dict(self) -> dict:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


# --- a request's events, in order: Started, Text..., then Done or Failed (Closed if cancelled) ---


@dataclass(frozen=True, slots=True)
class Started:
    cached_tokens: int
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Text the model wrote between its thinking markers (returned as reasoning_content)."""

    text: str


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token's log-probability (log-softmax of the logits it was sampled from, before
    temperature), and the most likely alternatives at that step, best first."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class Logprobs:
    entries: tuple[TokenLogprob, ...]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Tool calls the model made, parsed out of its text (which they never appear in)."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: FinishReason
    stats: Stats
    stop_sequence: str | None = None  # the stop string that ended it, if one did


@dataclass(frozen=True, slots=True)
class Failed:
    error: LMXError


@dataclass(frozen=True, slots=True)
class Closed:
    """A cancelled request left the engine; nobody reads it any more."""


Event = Started | Text | Reasoning | Logprobs | ToolCalls | Done | Failed | Closed
LAST_EVENTS = (Done, Failed, Closed)


# --- the engine's state, as the server mirrors it ------------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    """How a model is loaded (POST /admin/models/load): None = the model's own or the setting."""

    context_length: int | None = None  # at most the model's own; longer prompts are refused
    prompt_cache_bytes: int | None = None  # this model's prompt caches (LMX_PROMPT_CACHE_BYTES)
    kv_bits: int | None = None  # keys and values quantized to these bits (mlx-lm's quantized KV cache)


DEFAULT_OPTIONS = LoadOptions()


@dataclass(frozen=True)
class DiskCacheSettings:
    """The prompt caches' disk tier (LMX_PROMPT_CACHE_DIR, _DISK_BYTES, _BLOCK)."""

    root: str
    budget_bytes: int
    block: int


@dataclass(frozen=True)
class LoadedInfo:
    """What the server process knows of a model the engine holds (no MLX objects)."""

    spec: ModelSpec
    config: dict
    vram_bytes: int
    load_time_ms: int
    loaded_at: float
    context_length: int
    backend: str
    vocab_size: int  # token ids a request may name are below this
    options: LoadOptions = DEFAULT_OPTIONS
    model_context_length: int = 0  # the model's own, before options.context_length
    max_token_bytes: int = 0  # the longest token's text, in UTF-8 bytes (0: not known)
    sharding: str | None = None  # across a distributed group: "tensor" or "pipeline"

    @property
    def vram_gb(self) -> float:
        return round(self.vram_bytes / 1e9, 3)


@dataclass
class EngineCounters:
    """Totals read by metrics; written by the engine thread only (a model on its own thread
    counts into its own, moved here with `take` between steps)."""

    generated_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completed: int = 0
    steps: int = 0
    disk_cache_bytes: int = 0  # the prompt caches' disk tier: sizes, not totals
    disk_cache_blocks: int = 0

    TOTALS = ("generated_tokens", "prompt_tokens", "cached_tokens", "completed", "steps")

    def take(self, other: EngineCounters) -> None:
        """Add `other`'s totals to these and zero them there."""
        for name in self.TOTALS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
            setattr(other, name, 0)


@dataclass(frozen=True)
class MemoryFigures:
    """MLX allocator figures, read by the engine thread only (on CUDA a query from another thread
    can wait behind a running step)."""

    active: int = 0
    peak: int = 0
    cache: int = 0
    total: int = 0  # device memory; 0 where the backend does not say
    kv_cache: tuple[tuple[str, int], ...] = ()  # (model path, bytes of keys and values it holds)
    ranks: tuple[int, ...] = ()  # a distributed group's active bytes, by rank (rank 0's is `active`)


@dataclass(frozen=True)
class GroupInfo:
    """A distributed group of engine processes (mx.distributed): rank 0 serves HTTP and schedules,
    the others follow its steps on their shards."""

    size: int
    backend: str
    hosts: tuple[str, ...]  # by rank
    sharding: str  # LMX_SHARDING: auto, tensor or pipeline
    lost: str | None = None  # why the group cannot step any more (a rank died or stopped answering)


@dataclass
class LoadResult:
    model: str
    load_time_ms: int
    vram_gb: float
    already_loaded: bool = False


@dataclass
class UnloadResult:
    model: str | None  # the one unloaded (the first, when several were)
    freed_vram_gb: float
    models: tuple[str, ...] = ()  # every model unloaded


class TokenizeKind(StrEnum):
    CHAT = "chat"  # messages -> ids through the chat template
    TEXT = "text"  # a string -> ids
    TEXTS = "texts"  # strings -> a list of ids each


class ModelAction(StrEnum):
    LOADED = "loaded"
    UNLOADED = "unloaded"
    EVICTED = "evicted"  # idle, least recently used, unloaded to make room for another
    EXPIRED = "expired"  # idle past its TTL (or its last request's keep_alive)


@dataclass(frozen=True)
class ModelEvent:
    """A model was loaded or unloaded (announced to listeners, then on /admin/events)."""

    action: ModelAction
    model: str
    vram_gb: float
    load_time_ms: int | None = None
    reason: str | None = None  # unloads: request, evicted, expired, oom, engine-stopped

    def as_dict(self) -> dict:
        event = {
            "type": "model_event",
            "action": str(self.action),
            "model": self.model,
            "vram_gb": self.vram_gb,
            "load_time_ms": self.load_time_ms,
        }
        if self.reason is not None:
            event["reason"] = self.reason
        return event


# --- commands: server -> engine (`call` numbers a command that gets a Reply) ------------------


@dataclass(frozen=True)
class Load:
    call: int
    spec: ModelSpec
    options: LoadOptions = DEFAULT_OPTIONS
    loaded_at: float | None = None  # set by rank 0 of a group, so every rank names the load alike


@dataclass(frozen=True)
class Unload:
    call: int
    path: str | None = None  # None: every resident model
    reason: str = "request"


@dataclass(frozen=True)
class DropCaches:
    """Drop every resident model's prompt caches (the guardian's first step); replies bytes freed."""

    call: int


@dataclass(frozen=True)
class Tokenize:
    call: int
    path: str  # the model the request was checked against
    kind: TokenizeKind
    payload: object


@dataclass(frozen=True)
class Embed:
    """Unit-length embeddings of token lists, between decoding steps."""

    call: int
    path: str
    loaded_at: float
    token_lists: list[list[int]]
    pooling: str


@dataclass(frozen=True)
class RerankPrompts:
    """A reranker's P(yes) after each query-document prompt."""

    call: int
    path: str
    loaded_at: float
    token_lists: list[list[int]]
    yes: int
    no: int


@dataclass(frozen=True)
class ScorePrompt:
    """Each prompt token's log-probability after the ones before it, with `top` alternatives."""

    call: int
    path: str
    loaded_at: float
    tokens: list[int]
    top: int


@dataclass(frozen=True)
class Generate:
    rid: int
    path: str
    request: GenerationRequest


@dataclass(frozen=True)
class Cancel:
    rid: int


@dataclass(frozen=True)
class RankLost:
    """A rank of the group is known gone (its process exited, seen by the launcher on this
    machine): rank 0's engine gives up at once, rather than when a collective times out."""

    reason: str


@dataclass(frozen=True)
class Call:
    """`fn(engine, *args)` on the engine thread between steps: for tests and benchmarks only.
    `fn` must be a module-level function (it travels by name) and its result must pickle."""

    call: int
    fn: Callable
    args: tuple = ()


@dataclass(frozen=True)
class Stop:
    pass


Command = (
    Load
    | Unload
    | DropCaches
    | Tokenize
    | Embed
    | RerankPrompts
    | ScorePrompt
    | Generate
    | Cancel
    | Call
    | RankLost
    | Stop
)


# --- messages: engine -> server ------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    call: int
    ok: bool
    result: object  # the answer, or the exception when not ok


@dataclass(frozen=True)
class StepEvents:
    """One engine step's events for every request, with the counters and memory of that moment."""

    items: list[tuple[int, Event]]
    counters: EngineCounters
    memory: MemoryFigures


@dataclass(frozen=True)
class RequestRefused:
    """A Generate the engine did not take."""

    rid: int
    error: LMXError


@dataclass(frozen=True)
class EngineState:
    models: tuple[LoadedInfo, ...]  # the resident models, in load order
    loading: str | None
    oom_unloaded: frozenset[str]  # paths of models the guardian unloaded, until loaded again
    group: GroupInfo | None = None  # a distributed group's description; None on one process


Message = Reply | StepEvents | RequestRefused | EngineState | ModelEvent
