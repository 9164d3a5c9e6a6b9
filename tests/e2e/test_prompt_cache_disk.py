"""Prompt caches on a real server with the real default model: a prompt changed in the middle is
explained (where, and with what text), and the disk tier serves a known prompt after a restart,
never to another model."""

import openai

from tests.conftest import GGUF_ID, MLX_ID

BLOCK = 32
PROMPT = [100 + (37 * i) % 4000 for i in range(150)]  # token ids: 4 full blocks before the last token
CHANGED_AT = 90


def _complete(client: openai.OpenAI, prompt: list[int], model: str = MLX_ID):
    reply = client.completions.create(model=model, prompt=prompt, max_tokens=6, temperature=0)
    stats = reply.model_extra["stats"]
    return reply.choices[0].text, reply.usage.prompt_tokens_details.cached_tokens, stats["prompt_cache"]


def test_prompt_cache_misses_are_explained_and_the_disk_tier_survives_a_restart(make_server):
    srv = make_server(default_model=MLX_ID, wait_ready=True, env={"LMX_PROMPT_CACHE_BLOCK": str(BLOCK)})
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)

    text, cached, report = _complete(client, PROMPT)
    assert (cached, report["tier"], report["reason"]) == (0, "none", "new")

    changed = [*PROMPT[:CHANGED_AT], 4242, *PROMPT[CHANGED_AT + 1 :]]
    _, cached, report = _complete(client, changed)
    assert report["reason"] == "diverged" and report["diverged_at"] == CHANGED_AT
    assert (report["tier"], cached, report["cached_tokens"]) == ("ram", CHANGED_AT, CHANGED_AT)
    assert report["prompt_text"] and report["cached_text"] and report["prompt_text"] != report["cached_text"]

    again, cached, report = _complete(client, PROMPT)
    assert (report["tier"], report["reason"], cached) == ("ram", "full", len(PROMPT) - 1) and again == text
    with srv.client() as http:
        metrics = http.get("/metrics").text
    assert 'lmx_prompt_cache_lookups_total{reason="diverged",tier="ram"} 1.0' in metrics
    disk = [line for line in metrics.splitlines() if line.startswith("lmx_prompt_cache_disk_bytes ")]
    assert disk and float(disk[0].split()[-1]) > 0
    assert list((srv.workdir / "prompt-cache").rglob("*.safetensors"))

    srv.stop()
    srv.start(wait_ready=True)  # RAM is empty now; the blocks on disk are not
    after, cached, report = _complete(client, PROMPT)
    full_blocks = (len(PROMPT) - 1) // BLOCK * BLOCK
    assert (report["tier"], cached) == ("disk", full_blocks)
    assert after == text  # the same greedy tokens as computed from scratch

    _, cached, report = _complete(client, PROMPT, model=GGUF_ID)  # the same weights, another file
    assert (report["tier"], cached) == ("none", 0)
