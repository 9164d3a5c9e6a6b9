"""Keys for the inference routes: with LMX_API_KEYS set, every /v1/* request must carry one.

LMX_API_KEYS is a comma-separated list, or the path of a file with one key per line (`#`
comments; re-read when the file changes, so keys rotate without a restart). A key travels as
`Authorization: Bearer <key>` or, as Anthropic's SDK sends it, `x-api-key: <key>`. The admin
token opens these routes too; an API key never opens /admin/*. Probes stay open.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from inference import conf

log = logging.getLogger("lmx.auth")
REFUSAL = (
    "The inference API needs a key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>') "
    "with one of LMX_API_KEYS."
)
_file_cache: dict[str, tuple[int, tuple[bytes, ...]]] = {}
_unreadable: set[str] = set()


def _from_file(path: Path) -> tuple[bytes, ...]:
    stamp = path.stat().st_mtime_ns
    cached = _file_cache.get(str(path))
    if cached is None or cached[0] != stamp:
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        cached = (stamp, tuple(line.encode() for line in lines if line))
        _file_cache[str(path)] = cached
    return cached[1]


def _configured() -> str:
    return (conf.get("LMX_API_KEYS") or "").strip()


def _names_file(value: str) -> bool:
    return value.startswith(("/", "~", "./", "../")) or ("," not in value and Path(value).is_file())


def keys() -> tuple[bytes, ...]:
    """The keys that open /v1/*; none when LMX_API_KEYS is unset, or names a file that cannot
    be read (then nothing opens the routes: a lost key file never leaves them open)."""
    value = _configured()
    if not value:
        return ()
    if _names_file(value):
        try:
            found = _from_file(Path(value).expanduser())
        except OSError as exc:
            if value not in _unreadable:  # once, not on every request
                _unreadable.add(value)
                log.error(
                    "LMX_API_KEYS names %s, which cannot be read (%s): /v1/* refuses every key", value, exc
                )
            return ()
        _unreadable.discard(value)
        return found
    return tuple(k.strip().encode() for k in value.split(",") if k.strip())


def required() -> bool:
    return bool(_configured())


def _given(scope) -> bytes:
    auth = b""
    api_key = b""
    for name, value in scope.get("headers", []):
        name = name.lower()
        if name == b"authorization" and not auth:
            auth = value
        elif name == b"x-api-key" and not api_key:
            api_key = value
    if auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return api_key.strip()


def key_ok(scope) -> bool:
    """Whether the request may use /v1/*: no keys are set, or it sends one of them (or the admin
    token). Every key is compared, in constant time, whichever matches."""
    if not required():
        return True
    allowed = keys()
    given = _given(scope)
    token = (conf.get("LMX_ADMIN_TOKEN") or "").encode()
    ok = False
    for key in (*allowed, token) if token else allowed:
        ok |= hmac.compare_digest(given, key)
    return ok and bool(given)


def warn_if_open(host: str) -> None:
    """One line at start when LMX listens beyond this machine with nothing guarding it."""
    if (
        host not in ("127.0.0.1", "localhost", "::1", "[::1]")
        and not required()
        and not conf.get("LMX_ADMIN_TOKEN")
    ):
        log.warning(
            "LMX listens on %s with neither LMX_API_KEYS nor LMX_ADMIN_TOKEN set: anyone on the "
            "network can run and load models.",
            host,
        )
