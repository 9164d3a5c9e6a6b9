"""POST /admin/models/load, /unload and /pull: which model to make resident, how, and for how
long; which to let go; which to fetch from the hub."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from inference.api.protocol.base import Bool, Int, KeepAlive, Shape, explain
from inference.wire import LoadOptions


class LoadRequest(Shape):
    missing = {"model": "give a model id, a local path or a hub id."}

    model: Annotated[
        str,
        Field(
            min_length=1, max_length=1024, pattern=r"\S", description="A model id, a local path or a hub id."
        ),
        explain("must be a non-empty string of at most 1024 characters."),
    ]
    alias: (
        Annotated[
            str,
            Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", description="Another name for the model."),
            explain("must be 1-128 letters, digits or . _ : / - (starting with a letter or digit)."),
        ]
        | None
    ) = None
    pin: Bool | None = Field(None, description="Never evicted to make room nor unloaded by its TTL.")
    ttl_s: KeepAlive | None = Field(
        None,
        description='Idle seconds (or a duration such as "30m") before it is unloaded; -1 never. '
        "Default: LMX_MODEL_TTL_S.",
    )
    context_length: Int(1, 10_000_000) | None = Field(
        None, description="At most the model's own; longer prompts are refused with 400."
    )
    prompt_cache_bytes: Int(0, 1 << 50) | None = Field(
        None, description="This model's prompt caches (default: LMX_PROMPT_CACHE_BYTES)."
    )
    kv_bits: Literal[4, 8] | None = Field(
        None,
        description="Keep keys and values quantized to 4 or 8 bits (mlx-lm's quantized KV cache): "
        "less memory per token of context, slightly different numbers.",
    )

    def options(self) -> LoadOptions:
        return LoadOptions(
            context_length=self.context_length,
            prompt_cache_bytes=self.prompt_cache_bytes,
            kv_bits=self.kv_bits,
        )


class UnloadRequest(Shape):
    model: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=1024,
                pattern=r"\S",
                description="A resident model's id, alias or path.",
            ),
            explain("must be a non-empty string of at most 1024 characters."),
        ]
        | None
    ) = None


class Evicted(BaseModel):
    model: str
    freed_vram_gb: float
    reason: str


class LoadResult(BaseModel):
    success: bool
    model: str
    load_time_ms: int
    vram_gb: float
    format: str
    backend: str | None
    context_length: int | None
    already_loaded: bool
    pinned: bool
    evicted: list[Evicted] = Field(description="Models unloaded to make room (least recently used first).")


class UnloadResult(BaseModel):
    success: bool
    model: str | None = None
    models: list[str] = Field(description="Every model unloaded.")
    freed_vram_gb: float


class PullRequest(Shape):
    missing = {"model": "give a Hugging Face model id (owner/name)."}

    model: Annotated[
        str,
        Field(
            min_length=3,
            max_length=193,
            pattern=r"\S",
            description="A Hugging Face model id (owner/name); progress comes as `downloading` model "
            "events on /admin/events.",
        ),
        explain("must be a Hugging Face model id (owner/name) of at most 193 characters."),
    ]


class PullResult(BaseModel):
    success: bool
    model: str
    path: str
    format: str
    size_bytes: int
    downloaded: bool = Field(description="False when the model was already on disk.")
