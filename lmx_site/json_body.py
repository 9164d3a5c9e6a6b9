"""Reading a request's JSON as a client may send it, bounded: nesting depth, number size and
well-formed Unicode are checked here, so no body reaches a handler that would fail on them with
a 500 (Python's json module recurses, parses a 10,000-digit integer only to refuse it, and takes
a lone surrogate escape such as "\\ud800" into a string no tokenizer or database can encode)."""

from __future__ import annotations

import json

from inference.errors import InvalidRequest

MAX_DEPTH = 64  # far beyond any API's bodies (a tool's JSON schema nests a few levels)
MAX_NUMBER_DIGITS = 64


def _number(text: str):
    if len(text) > MAX_NUMBER_DIGITS:
        raise InvalidRequest(
            f"A number in the body has {len(text)} characters; at most {MAX_NUMBER_DIGITS} are read."
        )
    return int(text)


def _constant(name: str):
    raise InvalidRequest(f"The body has {name}, which is not JSON.")


def loads(raw: bytes | str, *, what: str = "request body"):
    """The JSON value of `raw`, or invalid-request saying what is wrong with it."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"The {what} is not valid JSON: it is not UTF-8 ({exc}).") from exc
    try:
        value = json.loads(raw, parse_int=_number, parse_constant=_constant)
    except RecursionError as exc:  # the C scanner's own bound, far past ours
        raise InvalidRequest(f"The {what} nests deeper than {MAX_DEPTH} levels.") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"The {what} is not valid JSON: {exc}.") from exc
    _check(value, what)
    return value


def _check(value, what: str) -> None:
    """Nesting depth, and every string and key well-formed Unicode (no lone surrogates), walked
    without recursion: the cost is one step per value, not per character."""
    stack = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            _well_formed(item, where)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidRequest(f"The {what} nests deeper than {MAX_DEPTH} levels.")
            if isinstance(item, dict):
                for key, inner in item.items():
                    _well_formed(key, f"{where}.{key!r}" if where else "a key")
                    stack.append((inner, f"{where}.{key}" if where else str(key), depth + 1))
            else:
                stack.extend((inner, f"{where}[{i}]", depth + 1) for i, inner in enumerate(item))


def _well_formed(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        place = f"Field '{where}'" if where else "The body"
        raise InvalidRequest(
            f"{place} is not well-formed Unicode (a lone surrogate escape at position {exc.start})."
        ) from exc
