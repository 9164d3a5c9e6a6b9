"""/v1/completions as OpenAI's: a list of prompts gives a choice each (in order, `index` set),
token ids work as a prompt, streamed too."""

import json

from tokenizers import Tokenizer

from tests.conftest import MLX_ID

PROMPTS = ["The capital of France is", "Once upon a time", "Water boils at"]


def _complete(http, prompt, **fields):
    body = {
        "model": MLX_ID,
        "prompt": prompt,
        "max_tokens": 6,
        "temperature": 0,
        "ignore_eos": True,
        **fields,
    }
    r = http.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_list_of_prompts_gives_a_choice_each_as_each_alone_would(server):
    with server.client() as http:
        alone = [_complete(http, p)["choices"][0]["text"] for p in PROMPTS]
        together = _complete(http, PROMPTS)
        echoed = _complete(http, PROMPTS[:2], echo=True)
    assert [c["index"] for c in together["choices"]] == [0, 1, 2]
    assert [c["text"] for c in together["choices"]] == alone
    assert together["usage"]["completion_tokens"] == 18
    assert [c["text"] for c in echoed["choices"]] == [p + t for p, t in zip(PROMPTS, alone[:2], strict=False)]


def test_token_ids_are_a_prompt_too(server, model_store):
    ids = Tokenizer.from_file(str(model_store / MLX_ID / "tokenizer.json")).encode(PROMPTS[0]).ids
    with server.client() as http:
        by_text = _complete(http, PROMPTS[0])
        by_ids = _complete(http, ids)
        both = _complete(http, [ids, PROMPTS[1]])
        outside = http.post("/v1/completions", json={"model": MLX_ID, "prompt": [10**7]})
        echo_ids = http.post("/v1/completions", json={"model": MLX_ID, "prompt": ids, "echo": True})
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"] == both["choices"][0]["text"]
    assert by_ids["usage"]["prompt_tokens"] == len(ids)
    assert outside.status_code == 400 and "outside the vocabulary" in outside.json()["error"]["message"]
    assert echo_ids.status_code == 400 and "'echo' needs text prompts" in echo_ids.json()["error"]["message"]


def test_a_streamed_list_names_each_choice(server):
    texts, finishes, usage = {}, {}, None
    with server.client() as http:
        alone = _complete(http, PROMPTS)
        body = {
            "model": MLX_ID,
            "prompt": PROMPTS,
            "max_tokens": 6,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with http.stream("POST", "/v1/completions", json=body) as r:
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: ") :])
                for choice in chunk["choices"]:
                    texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
                    if choice["finish_reason"]:
                        finishes[choice["index"]] = choice["finish_reason"]
                usage = chunk.get("usage") or usage
    assert texts == {i: c["text"] for i, c in enumerate(alone["choices"])}
    assert finishes == {0: "length", 1: "length", 2: "length"}
    assert usage["completion_tokens"] == 18
