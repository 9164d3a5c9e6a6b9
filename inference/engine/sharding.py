"""Splitting a loaded model over a distributed group with mlx-lm's own sharding: tensor parallel
through the model's `shard()`, pipeline through `model.model.pipeline()`.

mlx-lm divides heads by the group's size without checking (SmolLM2's 9 heads over 2 ranks
become 4 and the first attention fails on shapes): a split that cannot work is refused here, by
name, before mlx-lm touches the model. Every rank decides alike: the answer depends on the config.
"""

from __future__ import annotations

from inference.errors import InvalidRequest


def _family(model) -> str:
    """mlx-lm's name for the model's family: its module (llama, qwen3_moe, ...)."""
    return type(model).__module__.rsplit(".", 1)[-1]


def _tensor_refusal(model, config: dict, size: int) -> str | None:
    if not hasattr(model, "shard"):
        return f"{_family(model)} has no tensor-parallel split in mlx-lm"
    text = config.get("text_config") or config
    checks = {
        "attention heads": text.get("num_attention_heads"),
        "key/value heads": text.get("num_key_value_heads", text.get("num_attention_heads")),
        "MLP width (intermediate_size)": text.get("intermediate_size"),
    }
    for what, count in checks.items():
        if isinstance(count, int) and count % size:
            return f"its {count} {what} do not divide by {size} ranks"
    return None


def _pipeline_refusal(model, size: int) -> str | None:
    inner = getattr(model, "model", None)
    if not hasattr(inner, "pipeline"):
        return f"{_family(model)} has no pipeline split in mlx-lm"
    if len(inner.layers) < size:
        return f"its {len(inner.layers)} layers are fewer than {size} ranks"
    return None


def shard(model, config: dict, group, *, mode: str, name: str) -> str:
    """Split `model` (lazy or loaded) over `group` as LMX_SHARDING asks; the split used
    ("tensor" or "pipeline"). Raises InvalidRequest naming why it cannot be split."""
    size = group.size()
    tensor = _tensor_refusal(model, config, size) if mode in ("auto", "tensor") else "not asked for"
    pipeline = _pipeline_refusal(model, size) if mode in ("auto", "pipeline") else "not asked for"
    if tensor is None:
        try:
            model.shard(group)
        except ValueError as exc:  # e.g. a quantized width that does not split into whole groups
            raise InvalidRequest(f"{name} cannot be split over {size} ranks by tensor: {exc}") from exc
        return "tensor"
    if pipeline is None:
        model.model.pipeline(group)
        return "pipeline"
    reasons = [
        f"tensor: {tensor}" if mode != "pipeline" else "",
        f"pipeline: {pipeline}" if mode != "tensor" else "",
    ]
    raise InvalidRequest(
        f"{name} cannot be split over {size} ranks (LMX_SHARDING={mode}): "
        + "; ".join(r for r in reasons if r)
        + ". Serve it on fewer ranks, or choose a model whose heads divide by the ranks."
    )
