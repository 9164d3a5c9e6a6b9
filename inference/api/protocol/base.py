"""What every request model shares: strict JSON types, unknown fields refused by name, null read
as absent, and pydantic's errors turned into LMX's `invalid-request` messages naming the field."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

from inference.errors import InvalidRequest


def fail(text: str, **values) -> PydanticCustomError:
    """A rule's error. `{field}` in `text` becomes the field's place (e.g. "messages[2].role");
    a text without it is read as "Field '<place>' <text>"."""
    return PydanticCustomError("lmx", "{text}", {"text": text, **values})


def explain(text: str) -> WrapValidator:
    """Any error of the annotated value becomes `text` (the place and the value sent are added)."""

    def wrap(value, handler):
        try:
            return handler(value)
        except ValidationError as exc:
            raise fail(text, value=value) from exc

    return WrapValidator(wrap)


def _range_rule(lo, hi, integer: bool) -> WrapValidator:
    def wrap(value, handler):
        try:
            return handler(value)
        except ValidationError as exc:
            wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
            if wrong_type or (integer and not isinstance(value, int)):
                kind = "an integer" if integer else "a number"
                raise fail(f"must be {kind}, got {type(value).__name__}.") from exc
            raise fail(f"must be between {lo} and {hi}, got {value}.") from exc

    return WrapValidator(wrap)


def Int(lo: int, hi: int, **field):
    return Annotated[int, Field(ge=lo, le=hi, **field), _range_rule(lo, hi, True)]


def Number(lo: float, hi: float, **field):
    return Annotated[float, Field(ge=lo, le=hi, **field), _range_rule(lo, hi, False)]


Bool = Annotated[bool, explain("must be true or false.")]

IGNORED_NOTE = "Accepted and ignored on purpose: it changes nothing a local server computes."


class Shape(BaseModel):
    """A JSON object of a request: its fields are all it may carry."""

    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=False)

    # Values that ask for nothing, read as absent even for a field LMX does not honour.
    asks_nothing: ClassVar[dict[str, tuple]] = {}
    # Hints for a missing required field, by name.
    missing: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if value is not None
            and not any(value == off and type(value) is type(off) for off in cls.asks_nothing.get(key, ()))
        }


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def keep_alive_seconds(value) -> float:
    """Ollama's keep_alive: seconds (a number or its text), a duration ("5m", "1h30m", "90s"),
    0 = unload after this request, anything negative = forever (-1.0)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidRequest("keep_alive must be a finite number of seconds.")
        return -1.0 if value < 0 else float(value)
    text = str(value).replace(" ", "")
    body = text.removeprefix("-")
    if _NUMBER.fullmatch(body):
        seconds = float(body)
    elif _DURATION.fullmatch(body):
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(body))
    else:
        raise InvalidRequest(
            f'keep_alive {value!r} is not a duration: give seconds (300), a duration ("5m", '
            '"1h30m"), 0 to unload after this request, or -1 to keep the model loaded.'
        )
    return -1.0 if text.startswith("-") and seconds > 0 else seconds


def _keep_alive(value, handler):
    try:
        return keep_alive_seconds(handler(value))
    except InvalidRequest as exc:
        raise fail(exc.message) from exc
    except ValidationError as exc:
        raise fail(
            f'keep_alive must be seconds or a duration such as "5m", got {type(value).__name__}.'
        ) from exc


KeepAlive = Annotated[int | float | str, WrapValidator(_keep_alive)]


KEEP_ALIVE_FIELD = Field(
    None,
    description="Ollama's keep_alive: how long the model stays loaded once this request ends "
    '(seconds, or a duration such as "5m"; 0 unloads it then, -1 keeps it).',
)


class Request(Shape):
    """A request body: the fields every API accepts and ignores on purpose (README lists them)."""

    user: str | None = Field(None, description=IGNORED_NOTE)
    metadata: dict[str, Any] | None = Field(None, description=IGNORED_NOTE)
    store: bool | None = Field(None, description=IGNORED_NOTE)
    service_tier: str | None = Field(None, description=IGNORED_NOTE)
    safety_identifier: str | None = Field(None, description=IGNORED_NOTE)
    prompt_cache_key: str | None = Field(None, description=IGNORED_NOTE)
    keep_alive: KeepAlive | None = KEEP_ALIVE_FIELD


_TYPE_NAMES = {"str", "int", "float", "bool", "dict", "list", "none"}


def _is_label(part) -> bool:
    """A union member's label pydantic puts in the place (e.g. "str", "list[tagged-union[...]]")."""
    return isinstance(part, str) and ("[" in part or part in _TYPE_NAMES or part.startswith("function-"))


def clean(loc: tuple) -> tuple:
    """The place of an error without pydantic's union labels and tagged-union tags."""
    out, skip_tag = [], False
    for part in loc:
        if _is_label(part):
            skip_tag = skip_tag or "tagged-union[" in part
            continue
        if skip_tag and isinstance(part, int):
            out.append(part)
            continue
        if skip_tag and isinstance(part, str):
            skip_tag = False  # the member's tag, not a field
            continue
        out.append(part)
    return tuple(out)


def place(loc: tuple) -> str:
    """("messages", 2, "role") -> "messages[2].role"."""
    out = ""
    for part in clean(loc):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _deepest(errors: list[dict]) -> list[dict]:
    """Of a union's failed members, the errors of the ones that got furthest: a list sent where
    a string or a list is allowed is judged as a list, not reported as "not a string"."""
    places = [clean(e["loc"]) for e in errors]
    return [
        e
        for e, loc in zip(errors, places, strict=True)
        if not (e["type"].endswith("_type") and any(o != loc and o[: len(loc)] == loc for o in places))
    ]


T = TypeVar("T", bound="Shape")


def parse(model: type[T], data: dict) -> T:
    """`data` as `model`, or InvalidRequest saying what is wrong and where."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(_message(model, exc.errors(include_url=False))) from None


def _message(model: type[Shape], errors: list[dict]) -> str:
    errors = _deepest(errors)
    missing = [e for e in errors if e["type"] == "missing" and len(e["loc"]) == 1]
    kinds = [e for e in errors if clean(e["loc"])[-1:] == ("type",) and e not in missing]
    # a missing field says most; then a wrong `type` (the rest of that object is judged by it)
    errors = missing + kinds + [e for e in errors if e not in missing and e not in kinds]
    unknown = sorted(place(e["loc"]) for e in errors if e["type"] == "extra_forbidden")
    if unknown and not missing:
        named = ", ".join(f"'{name}'" for name in unknown)
        one = len(unknown) == 1
        return (
            f"Field{'' if one else 's'} {named} {'is' if one else 'are'} not supported by LMX; remove "
            f"{'it' if one else 'them'}. LMX refuses what it cannot honour rather than ignore it."
        )
    error = errors[0]
    where = place(error["loc"])
    if error["type"] == "lmx":
        ctx = error["ctx"]
        # placeholders replaced, not str.format: the text may quote the client's value, braces and all
        text = ctx["text"].replace("{field}", where).replace("{value}", str(ctx.get("value")))
        return text if "{field}" in ctx["text"] or not where else f"Field '{where}' {text}"
    if error["type"] == "missing" and len(clean(error["loc"])) > 1:
        loc = clean(error["loc"])
        return f"{place(loc[:-1])} has no '{loc[-1]}'."
    if error["type"] == "missing":
        hint = model.missing.get(where)
        return f"Missing field '{where}'" + (f": {hint}" if hint else ".")
    if error["type"] in ("list_type", "too_short"):
        return f"Field '{where}' must be a non-empty list."
    if error["type"] == "too_long":
        return f"Field '{where}' takes at most {error['ctx']['max_length']} items."
    if error["type"] == "union_tag_invalid":
        return f"{where}.type '{error['ctx']['tag']}' is not supported; use one of {error['ctx']['expected_tags']}."
    if error["type"] == "literal_error":
        return f"Field '{where}' must be one of {error['ctx']['expected']}, got {error['input']!r}."
    if error["type"] == "model_type":
        return f"Field '{where}' must be an object." if where else "The request body must be a JSON object."
    return f"Field '{where}' is invalid: {error['msg']}." if where else error["msg"]
