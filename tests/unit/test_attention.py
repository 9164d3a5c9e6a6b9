"""Short-chunk attention (inference.engine.mlx_compat.attention): the same result as MLX's kernel, used only where
it was measured to pay, and put in and taken out of mlx-lm's path by the setting."""

import mlx.core as mx
import pytest

from inference.engine.mlx_compat import attention


def _qkv(length: int, total: int, heads: int = 8, kv_heads: int = 2, dims: int = 32):
    mx.random.seed(length * 1000 + total)
    q = mx.random.normal((1, heads, length, dims))
    k, v = (mx.random.normal((1, kv_heads, total, dims)) for _ in range(2))
    return q, k, v


@pytest.mark.parametrize(
    ("length", "total", "heads", "kv_heads"), [(5, 40, 8, 2), (27, 300, 4, 4), (2, 3, 6, 3)]
)
def test_a_chunk_after_cached_tokens_attends_as_mlx_kernel_does(length, total, heads, kv_heads):
    q, k, v = _qkv(length, total, heads, kv_heads)
    ours = attention.unfused_causal(q, k, v, scale=0.2)
    kernel = attention._fused(q, k, v, scale=0.2, mask="causal")
    assert ours.shape == kernel.shape == (1, heads, length, 32)
    assert mx.allclose(ours, kernel, atol=1e-5).item()


def test_only_short_causal_chunks_after_cached_tokens_leave_the_fused_kernel(monkeypatch):
    fused_calls = []

    def fused(q, k, v, **kwargs):
        fused_calls.append((q.shape[2], k.shape[2]))
        return attention.unfused_causal(q, k, v, scale=kwargs["scale"])

    monkeypatch.setattr(attention, "_fused", fused)
    monkeypatch.setattr(attention, "MAX_SCORES", 8 * 20 * 100)  # (1 x 8 heads) x 20 x 100 scores
    for length, total, mask in [
        (20, 100, "causal"),  # a follow-up chunk: unfused
        (21, 100, "causal"),  # over MAX_SCORES
        (30, 30, "causal"),  # a fresh prompt
        (1, 100, None),  # a decoding step
        (20, 100, mx.zeros((20, 100))),  # a mask array (the batch's padding)
    ]:
        q, k, v = _qkv(length, total)
        attention.attention(q, k, v, scale=0.1, mask=mask)
    assert fused_calls == [(21, 100), (30, 30), (1, 100), (20, 100)]


def test_install_routes_mlx_lm_through_it_and_off_restores_the_kernel():
    original = mx.fast.scaled_dot_product_attention
    try:
        attention.install(True)
        assert mx.fast.scaled_dot_product_attention is attention.attention
        attention.install(False)
        assert mx.fast.scaled_dot_product_attention is attention._fused
    finally:
        mx.fast.scaled_dot_product_attention = original
