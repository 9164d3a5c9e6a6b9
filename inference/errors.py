"""The SPEC's error codes, and the one place that maps failures to them."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    severity: str


INVALID_REQUEST = ErrorCode("invalid-request", 400, "warning")
UNAUTHORIZED = ErrorCode("unauthorized", 401, "warning")
MODEL_NOT_FOUND = ErrorCode("model-not-found", 404, "warning")
METHOD_NOT_ALLOWED = ErrorCode("invalid-request", 405, "warning")
PAYLOAD_TOO_LARGE = ErrorCode("invalid-request", 413, "warning")
CROSS_SITE = ErrorCode("invalid-request", 403, "warning")  # a browser on another site writing
NOT_JSON = ErrorCode("invalid-request", 415, "warning")
PATH_NOT_FOUND = ErrorCode("invalid-request", 404, "warning")
NO_MODEL_LOADED = ErrorCode("no-model-loaded", 503, "warning")
OOM_UNLOADED = ErrorCode("oom-unloaded", 503, "critical")
SERVER_BUSY = ErrorCode("server-busy", 503, "warning")
INSUFFICIENT_MEMORY = ErrorCode("insufficient-memory", 503, "warning")
LMX_TIMEOUT = ErrorCode("lmx-timeout", 504, "warning")
STORAGE_FULL = ErrorCode("storage-full", 507, "error")
INTERNAL = ErrorCode("internal-error", 500, "error")
# A rank of a distributed group died or stopped answering: the group cannot step any more.
DISTRIBUTED_RANK_LOST = ErrorCode("distributed-rank-lost", 503, "critical")


class LMXError(Exception):
    """A failure the client should see with a SPEC code and a message saying what to do."""

    kind: ErrorCode = INTERNAL

    def __init__(self, message: str, *, kind: ErrorCode | None = None, retry_after: int | None = None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.message = message
        self.retry_after = retry_after

    @property
    def code(self) -> str:
        return self.kind.code

    @property
    def status(self) -> int:
        return self.kind.status


class InvalidRequest(LMXError):
    kind = INVALID_REQUEST


class ModelNotFound(LMXError):
    kind = MODEL_NOT_FOUND


class NoModelLoaded(LMXError):
    kind = NO_MODEL_LOADED

    def __init__(self, message: str = "No model is loaded. Load one with POST /admin/models/load.", **kw):
        kw.setdefault("retry_after", 5)
        super().__init__(message, **kw)


class OomUnloaded(LMXError):
    kind = OOM_UNLOADED

    def __init__(
        self,
        message: str = "The model was unloaded to prevent running out of memory. "
        "Free memory and reload a model (possibly smaller).",
        **kw,
    ):
        kw.setdefault("retry_after", 30)
        super().__init__(message, **kw)


class DistributedRankLost(LMXError):
    kind = DISTRIBUTED_RANK_LOST


class StorageFull(LMXError):
    kind = STORAGE_FULL


class LmxTimeout(LMXError):
    kind = LMX_TIMEOUT


class ServerBusy(LMXError):
    kind = SERVER_BUSY


def at_capacity(max_concurrent: int, max_queue: int) -> ServerBusy:
    return ServerBusy(
        f"LMX is at capacity ({max_concurrent} running, {max_queue} queued). "
        "Retry shortly or raise LMX_MAX_CONCURRENT / LMX_MAX_QUEUE.",
        retry_after=2,
    )


class ModelLoadError(LMXError):
    """A model file exists but cannot be loaded (corrupt, unsupported)."""

    kind = INVALID_REQUEST


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def scrub(text: str) -> str:
    """Messages go to clients and the database: no memory addresses."""
    return _ADDRESS.sub("0x…", text)


def to_lmx_error(exc: BaseException) -> LMXError:
    """Map any failure to the error the client sees."""
    if isinstance(exc, LMXError):
        return exc
    if isinstance(exc, MemoryError):
        return OomUnloaded()
    if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
        return StorageFull("The disk is full. Free disk space or remove cached models.")
    return LMXError(f"Internal error ({type(exc).__name__}). See the server log.", kind=INTERNAL)


def error_body(err: LMXError) -> dict:
    return {"error": {"code": err.code, "message": scrub(err.message)}}
