"""POST /admin/models/load: which model to make resident."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from inference.api.protocol.base import Shape, explain


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


class LoadResult(BaseModel):
    success: bool
    model: str
    load_time_ms: int
    vram_gb: float


class UnloadResult(BaseModel):
    success: bool
    model: str | None = None
    freed_vram_gb: float
