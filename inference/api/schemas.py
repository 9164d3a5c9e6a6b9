"""Request shapes of the OpenAI-compatible API, validated into dataclasses.

Every rule here answers a bad body with `invalid-request` and a message naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inference import grammars
from inference.api import fields, tools
from inference.api.tools import ToolUse
from inference.errors import InvalidRequest

ROLES = ("system", "user", "assistant", "tool", "developer")
MAX_STOP = 16
MAX_TOKENS_CAP = 1_000_000


@dataclass
class SamplingParams:
    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: list[str]
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: dict[int, float] | None
    ignore_eos: bool = False
    logprobs: int | None = None  # report log-probabilities, with this many alternatives a token


@dataclass
class ChatRequest:
    model: str
    messages: list[dict]
    stream: bool
    include_usage: bool
    params: SamplingParams
    grammar: str | None = None  # from response_format or tool_choice: what the output must follow
    tools: ToolUse | None = None
    template_kwargs: dict = field(default_factory=dict)  # for the chat template (thinking, effort)


@dataclass
class CompletionRequest:
    model: str
    prompts: list  # each a string or a list of token ids: one choice per prompt, in order
    stream: bool
    include_usage: bool
    params: SamplingParams
    echo: bool = False
    extra: dict = field(default_factory=dict)
    token_lists: list | None = None  # each prompt's tokens, once serving has them

    @property
    def prompt(self):
        return self.prompts[0]


MAX_PROMPTS = 64


def _number(data: dict, name: str, default, lo: float, hi: float, *, integer: bool = False):
    value = data.get(name)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not isinstance(value, int))
    ):
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(f"Field '{name}' must be {kind}, got {type(value).__name__}.")
    if not lo <= value <= hi:
        raise InvalidRequest(f"Field '{name}' must be between {lo} and {hi}, got {value}.")
    return value


def _bool(data: dict, name: str, default: bool) -> bool:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"Field '{name}' must be true or false.")
    return value


def _model(data: dict) -> str:
    model = data.get("model")
    if model is None:
        raise InvalidRequest("Missing field 'model': name the loaded model (see GET /v1/models).")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("Field 'model' must be a non-empty string.")
    return model.strip()[:300]


def _params(data: dict) -> SamplingParams:
    n = _number(data, "n", 1, 1, 128, integer=True)
    if n != 1:
        raise InvalidRequest("Only n=1 is supported: send one request per completion.")
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    if max_tokens is not None:
        max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", None, 1, MAX_TOKENS_CAP, integer=True)
    stop = data.get("stop")
    if stop is None:
        stops = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = stop
    else:
        raise InvalidRequest("Field 'stop' must be a string or a list of strings.")
    if len(stops) > MAX_STOP:
        raise InvalidRequest(f"Field 'stop' takes at most {MAX_STOP} strings.")
    bias = data.get("logit_bias")
    logit_bias = None
    if bias is not None:
        if not isinstance(bias, dict):
            raise InvalidRequest("Field 'logit_bias' must be an object of token id -> bias.")
        logit_bias = {}
        for key, value in bias.items():
            try:
                token = int(key)
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"logit_bias key '{key}' is not a token id.") from exc
            logit_bias[token] = float(_number({"bias": value}, "bias", 0, -100, 100))
    seed = data.get("seed")
    if seed is not None:
        seed = _number(data, "seed", None, -(2**63), 2**64 - 1, integer=True) % (2**63)
    ignore_eos = data.get("ignore_eos", False)  # vLLM's extension: benchmarks generate to max_tokens
    if not isinstance(ignore_eos, bool):
        raise InvalidRequest("Field 'ignore_eos' must be true or false.")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=float(_number(data, "temperature", 0.7, 0, 2)),
        top_p=float(_number(data, "top_p", 1.0, 0, 1)),
        seed=seed,
        stop=[s for s in stops if s],
        presence_penalty=_number(data, "presence_penalty", None, -2, 2),
        frequency_penalty=_number(data, "frequency_penalty", None, -2, 2),
        logit_bias=logit_bias or None,
        ignore_eos=ignore_eos,
    )


def _stream_options(data: dict, stream: bool) -> bool:
    options = data.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("Field 'stream_options' must be an object.")
    fields.refuse_unknown(options, fields.STREAM_OPTIONS, ignored=frozenset(), where="stream_options.")
    if not stream:
        raise InvalidRequest("'stream_options' is only allowed when 'stream' is true.")
    return _bool(options, "include_usage", False)


def _content(message: dict, index: int) -> str:
    content = message.get("content")
    if content is None:
        if message.get("role") == "assistant":
            return ""
        raise InvalidRequest(f"messages[{index}] has no 'content'.")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise InvalidRequest(
                    f"messages[{index}].content parts must be {{'type': 'text', 'text': '...'}}; "
                    "this model takes text only."
                )
            parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequest(f"messages[{index}].content must be a string or a list of text parts.")


def chat_request(data: dict) -> ChatRequest:
    fields.refuse_unknown(data, fields.CHAT)
    model = _model(data)
    messages = data.get("messages")
    if messages is None:
        raise InvalidRequest("Missing field 'messages': a list of {role, content} objects.")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("Field 'messages' must be a non-empty list.")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object with 'role' and 'content'.")
        fields.refuse_unknown(
            message, fields.MESSAGE, ignored=fields.MESSAGE_IGNORED, where=f"messages[{i}]."
        )
        role = message.get("role")
        if role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role '{role}' is unknown; use one of {', '.join(ROLES)}.")
        clean.append(
            {
                "role": "system" if role == "developer" else role,
                "content": _content(message, i),
                **tools.message_tool_fields(message, i),
            }
        )
    stream = _bool(data, "stream", False)
    params = _params(data)
    params.logprobs = _chat_logprobs(data)
    grammar = _response_format(data.get("response_format"))
    use = tools.tool_use(data)
    if use is not None and grammar is not None:
        raise InvalidRequest(
            "'response_format' and 'tools' cannot be combined here: send tool_choice 'none' to get the format."
        )
    return ChatRequest(
        model,
        clean,
        stream,
        _stream_options(data, stream),
        params,
        grammar or (use and use.grammar),
        use,
        _template_kwargs(data),
    )


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high")


def _chat_logprobs(data: dict) -> int | None:
    """Chat's `logprobs` (true/false) and `top_logprobs` (0-20, needs logprobs)."""
    wanted = _bool(data, "logprobs", False)
    top = _number(data, "top_logprobs", None, 0, 20, integer=True)
    if top is not None and not wanted:
        raise InvalidRequest("Field 'top_logprobs' needs 'logprobs': true.")
    return (top or 0) if wanted else None


def _template_kwargs(data: dict) -> dict:
    """`chat_template_kwargs` (e.g. {"enable_thinking": false}) and `reasoning_effort`, for the
    model's chat template: a template that reads them follows them."""
    kwargs = data.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) and k.isidentifier() for k in kwargs):
        raise InvalidRequest("Field 'chat_template_kwargs' must be an object of template variables.")
    reserved = {"messages", "tools", "add_generation_prompt", "tokenize"} & set(kwargs)
    if reserved:
        raise InvalidRequest(f"chat_template_kwargs may not set {', '.join(sorted(reserved))}.")
    effort = data.get("reasoning_effort")
    if effort is not None:
        if effort not in REASONING_EFFORTS:
            raise InvalidRequest(f"Field 'reasoning_effort' must be one of {', '.join(REASONING_EFFORTS)}.")
        kwargs = {**kwargs, "reasoning_effort": effort}
    return kwargs


def _response_format(value) -> str | None:
    """OpenAI's `response_format` as an llguidance grammar: `json_object` (any JSON object) or
    `json_schema` (that schema, enforced token by token whatever `strict` says); `text`: none."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise InvalidRequest("Field 'response_format' must be an object with a 'type'.")
    kind = value["type"]
    fields.refuse_unknown(
        value, frozenset({"type", "json_schema"}), ignored=frozenset(), where="response_format."
    )
    if kind == "text":
        return None
    if kind == "json_object":
        return grammars.json_schema({"type": "object"}, where="response_format")
    if kind != "json_schema":
        raise InvalidRequest(
            f"response_format.type '{kind}' is not supported; use 'text', 'json_object' or 'json_schema'."
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise InvalidRequest(
            "response_format.json_schema must be an object with 'schema' (a JSON schema object)."
        )
    fields.refuse_unknown(
        spec,
        frozenset({"name", "schema", "strict", "description"}),
        ignored=frozenset(),
        where="response_format.json_schema.",
    )
    if "strict" in spec and not isinstance(spec["strict"], bool | None):
        raise InvalidRequest("response_format.json_schema.strict must be true or false.")
    return grammars.json_schema(spec["schema"], where="response_format.json_schema.schema")


def completion_request(data: dict) -> CompletionRequest:
    fields.refuse_unknown(data, fields.COMPLETIONS)
    model = _model(data)
    prompts = _prompts(data.get("prompt"))
    echo = _bool(data, "echo", False)
    if echo and any(not isinstance(p, str) for p in prompts):
        raise InvalidRequest("'echo' needs text prompts; token id prompts are not echoed.")
    stream = _bool(data, "stream", False)
    params = _params(data)
    params.logprobs = _number(data, "logprobs", None, 0, 5, integer=True)
    return CompletionRequest(model, prompts, stream, _stream_options(data, stream), params, echo=echo)


def _is_ids(value) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def _prompts(prompt) -> list:
    """OpenAI's `prompt`: a string, a list of strings, a list of token ids, or a list of those."""
    if prompt is None:
        raise InvalidRequest("Missing field 'prompt'.")
    if isinstance(prompt, str) or (_is_ids(prompt) and prompt):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) or _is_ids(p) for p in prompt):
        prompts = prompt
    else:
        raise InvalidRequest(
            "Field 'prompt' must be a string, a list of strings, a list of token ids or a list of such lists."
        )
    if len(prompts) > MAX_PROMPTS:
        raise InvalidRequest(
            f"Field 'prompt' takes at most {MAX_PROMPTS} prompts; send the rest in another request."
        )
    for i, item in enumerate(prompts):
        if not item:
            raise InvalidRequest(
                "Field 'prompt' is empty." if len(prompts) == 1 else f"prompt[{i}] is empty."
            )
        if not isinstance(item, str) and min(item) < 0:
            raise InvalidRequest(f"prompt[{i}] has a negative token id.")
    return prompts


MAX_INPUTS = 2048
MAX_DOCUMENTS = 1024


@dataclass
class EmbeddingRequest:
    model: str
    inputs: list  # texts, or token id lists
    encoding_format: str
    dimensions: int | None


@dataclass
class RerankRequest:
    model: str
    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool


def _inputs(value) -> list:
    """OpenAI's `input`: a string, a list of strings, a token id list, or a list of those."""
    if isinstance(value, str):
        value = [value]
    elif (
        isinstance(value, list)
        and value
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    ):
        value = [value]
    if not isinstance(value, list) or not value:
        raise InvalidRequest("Field 'input' must be a string, a list of strings or a list of token id lists.")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(
            f"Field 'input' takes at most {MAX_INPUTS} items; send them in several requests."
        )
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(f"input[{i}] is empty.")
        elif not (
            isinstance(item, list)
            and item
            and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in item)
        ):
            raise InvalidRequest(f"input[{i}] must be a non-empty string or a list of token ids.")
    return value


def embedding_request(data: dict) -> EmbeddingRequest:
    fields.refuse_unknown(data, fields.EMBEDDINGS)
    model = _model(data)
    if "input" not in data:
        raise InvalidRequest("Missing field 'input': the text (or texts) to embed.")
    encoding = data.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest("Field 'encoding_format' must be 'float' or 'base64'.")
    dimensions = _number(data, "dimensions", None, 1, 1_000_000, integer=True)
    return EmbeddingRequest(model, _inputs(data["input"]), encoding, dimensions)


def rerank_request(data: dict) -> RerankRequest:
    fields.refuse_unknown(data, fields.RERANK)
    model = _model(data)
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("Field 'query' must be a non-empty string.")
    documents = data.get("documents")
    if not isinstance(documents, list) or not documents:
        raise InvalidRequest("Field 'documents' must be a non-empty list of strings.")
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidRequest(f"Field 'documents' takes at most {MAX_DOCUMENTS} items.")
    texts = []
    for i, doc in enumerate(documents):
        if isinstance(doc, dict):  # Cohere's {"text": ...} form
            doc = doc.get("text")
        if not isinstance(doc, str) or not doc:
            raise InvalidRequest(f"documents[{i}] must be a non-empty string.")
        texts.append(doc)
    top_n = _number(data, "top_n", None, 1, MAX_DOCUMENTS, integer=True)
    return RerankRequest(model, query, texts, top_n, _bool(data, "return_documents", False))
