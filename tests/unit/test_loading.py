"""The load's warm-up (inference.engine.loading.warm_up) on a small random Llama."""

import mlx.core as mx
from mlx_lm.models import llama

from inference.engine import cpu_blas, loading, solo


class Recorded:
    """A model that notes the shape of every call: (tokens, tokens already cached)."""

    def __init__(self, model):
        self.model, self.calls = model, []
        self.layers = model.layers

    def __call__(self, inputs, cache=None):
        self.calls.append((inputs.shape[1], cache[0].offset))
        return self.model(inputs, cache=cache)


def _model() -> Recorded:
    args = llama.ModelArgs(
        model_type="llama",
        hidden_size=64,
        num_hidden_layers=1,
        intermediate_size=128,
        num_attention_heads=2,
        num_key_value_heads=1,
        rms_norm_eps=1e-5,
        vocab_size=64,
    )
    model = llama.Model(args)
    mx.eval(model.parameters())
    return Recorded(model)


def test_the_warm_up_runs_a_fresh_chunk_a_chunk_after_it_and_a_decoding_step(settings):
    settings.LMX_PREFILL_BUCKETS = "off"
    model = _model()
    loading.warm_up(model)
    assert model.calls == [(8, 0), (8, 8), (1, 16)]


def test_with_prefill_buckets_on_a_cpu_the_warm_up_stays_short(settings):
    settings.LMX_PREFILL_BUCKETS = "on"
    model = _model()
    loading.warm_up(model)
    assert model.calls == [(8, 0), (8, 8), (1, 16)]
    assert loading.later_warm_ups(model) == []


def test_with_prefill_buckets_on_a_gpu_every_bucket_length_is_warmed_later_shortest_first(
    settings, monkeypatch
):
    settings.LMX_PREFILL_BUCKETS = "on"
    # this machine has no GPU; the model runs on the CPU as if it were one
    monkeypatch.setattr(cpu_blas, "on_cpu", lambda: False)
    model = _model()
    loading.warm_up(model)
    assert model.calls == [(8, 0), (8, 8), (1, 16)]  # only what every first request needs
    for _name, run in loading.later_warm_ups(model):
        run()
    assert model.calls[3:] == [(length, 0) for length in solo.BUCKETS]
    assert len(solo.BUCKETS) == 16 and {solo.bucket(n) for n in range(1, solo.PREFILL_STEP + 1)} == set(
        solo.BUCKETS
    )
