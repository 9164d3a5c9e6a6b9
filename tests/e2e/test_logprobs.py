"""Log-probabilities on the real default model: each token's is the log-softmax of the logits it
came from; at temperature 0 the chosen token is the most likely one."""

import math

import openai
import pytest

from tests.conftest import MLX_ID

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


def test_chat_logprobs_name_the_chosen_token_as_the_top_one(client):
    done = client.chat.completions.create(
        model=MLX_ID, messages=QUESTION, temperature=0, max_tokens=12, logprobs=True, top_logprobs=3
    )
    choice = done.choices[0]
    content = choice.logprobs.content
    assert len(content) == done.usage.completion_tokens
    assert "".join(t.token for t in content) == choice.message.content
    for token in content:
        assert len(token.top_logprobs) == 3 and token.logprob <= 0
        best = token.top_logprobs[0]
        assert best.token == token.token and math.isclose(best.logprob, token.logprob, abs_tol=1e-4)
        assert [t.logprob for t in token.top_logprobs] == sorted(
            (t.logprob for t in token.top_logprobs), reverse=True
        )
        assert bytes(token.bytes).decode() == token.token
    assert sum(math.exp(t.logprob) for t in content[0].top_logprobs) <= 1.0001
    # Streamed: the same tokens and values, spread over the chunks.
    chunks = client.chat.completions.create(
        model=MLX_ID, messages=QUESTION, temperature=0, max_tokens=12, logprobs=True, stream=True
    )
    streamed = [
        t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content
    ]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [
        (t.token, round(t.logprob, 4)) for t in content
    ]
    assert all(t.top_logprobs == [] for t in streamed)


def test_completions_logprobs_in_the_legacy_shape(server):
    with server.client() as http:
        body = {
            "model": MLX_ID,
            "prompt": "The capital of France is",
            "max_tokens": 5,
            "temperature": 0,
            "logprobs": 2,
        }
        choice = http.post("/v1/completions", json=body).json()["choices"][0]
        no_echo = http.post("/v1/completions", json={**body, "echo": True, "max_tokens": 1})
    logprobs = choice["logprobs"]
    # mlx-lm's detokenizer drops the first token's leading space from the text (a known gap)
    assert "".join(logprobs["tokens"]).removeprefix(" ") == choice["text"]
    assert len(logprobs["token_logprobs"]) == len(logprobs["tokens"]) == len(logprobs["top_logprobs"])
    for token, value, top in zip(
        logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"], strict=True
    ):
        assert (
            len(top) <= 2
            and math.isclose(max(top.values()), value, abs_tol=1e-4)
            and top[token] == max(top.values())
        )
    offsets = logprobs["text_offset"]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    assert no_echo.status_code == 200


def test_echo_with_logprobs_scores_the_prompt_as_generation_would(server):
    """What lm-evaluation-harness asks for a log-likelihood: the prompt's own log-probabilities.
    A greedy token scored as part of the prompt gets the value it was generated with."""
    prompt = "The capital of France is"
    body = {"model": MLX_ID, "max_tokens": 1, "temperature": 0, "logprobs": 3}
    with server.client() as http:
        generated = http.post("/v1/completions", json={**body, "prompt": prompt}).json()["choices"][0]
        token, value = generated["logprobs"]["tokens"][0], generated["logprobs"]["token_logprobs"][0]
        scored = http.post("/v1/completions", json={**body, "prompt": prompt + token, "echo": True}).json()
        streamed = http.post("/v1/completions", json={**body, "prompt": prompt, "echo": True, "stream": True})
    logprobs = scored["choices"][0]["logprobs"]
    tokens = logprobs["tokens"]
    assert scored["choices"][0]["text"].startswith(prompt + token)
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    at = len(tokens) - 2  # the token after the prompt's own: generated beyond it
    assert tokens[at] == token and abs(logprobs["token_logprobs"][at] - value) < 0.01
    assert all(v <= 0 for v in logprobs["token_logprobs"][1:])
    assert all(len(top) <= 3 for top in logprobs["top_logprobs"][1:])
    assert "".join(tokens[: at + 1]) == prompt + token
    assert logprobs["text_offset"][at] == len(prompt)
    assert streamed.status_code == 200 and f'"text": "{prompt}"' in streamed.text  # the echo comes first
