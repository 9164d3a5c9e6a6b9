"""Other names for models, usable wherever a request names a model and listed in /v1/models
(e.g. `gpt-4o-mini=Qwen3-4B-4bit`, so a client hard-wired to one name reaches a local model).
From LMX_MODEL_ALIASES (`alias=model` pairs separated by commas, or the path of a file of such
lines, `#` comments allowed) and from `alias` at POST /admin/models/load (kept until restart)."""

from __future__ import annotations

import functools
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from inference import conf

_added: dict[str, str] = {}  # given at load, by alias (lower case)


def parse(text: str) -> dict[str, str]:
    """{alias (lower case): model} from `alias=model` pairs (one a line, or comma-separated)."""
    pairs = {}
    for raw in text.replace(",", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        alias, sep, model = (part.strip() for part in line.partition("="))
        if not sep or not alias or not model:
            raise ImproperlyConfigured(f"LMX_MODEL_ALIASES: {raw.strip()!r} is not 'alias=model'.")
        pairs[alias.lower()] = model
    return pairs


@functools.lru_cache(maxsize=4)
def _configured(value: str) -> dict[str, str]:
    path = Path(value).expanduser()
    if value and "=" not in value and path.is_file():
        return parse(path.read_text())
    if value and "=" not in value:
        raise ImproperlyConfigured(f"LMX_MODEL_ALIASES: {value!r} is neither 'alias=model' pairs nor a file.")
    return parse(value)


def all_aliases() -> dict[str, str]:
    """{alias: model}, the ones given at load over the configured ones."""
    return {**_configured(conf.get("LMX_MODEL_ALIASES")), **_added}


def resolve(name: str) -> str:
    """The model `name` stands for (itself when it is no alias)."""
    return all_aliases().get(name.strip().lower(), name)


def add(alias: str, model: str) -> None:
    _added[alias.strip().lower()] = model
