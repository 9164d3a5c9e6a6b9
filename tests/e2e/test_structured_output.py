"""Structured outputs on the real default model through the official `openai` SDK: the output
follows the schema because decoding is constrained to it, inside the continuous batch."""

import json
import random
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
import pytest

from tests.conftest import MLX_ID

WORDS = ["red", "green", "blue", "cat", "dog", "tree", "river", "stone"]


def _schema(rng: random.Random, depth: int = 0) -> dict:
    """A random bounded schema: strings, integers and numbers with bounds, enums, arrays and
    nested objects, every property required, no others allowed."""
    kinds = ["string", "integer", "number", "enum", "boolean", "array"] + (["object"] if depth < 2 else [])
    props = {}
    for i in range(rng.randint(1, 3)):
        kind = rng.choice(kinds)
        if kind == "string":
            prop = {"type": "string", "maxLength": rng.randint(3, 12)}
        elif kind == "integer":
            low = rng.randint(-50, 50)
            prop = {"type": "integer", "minimum": low, "maximum": low + rng.randint(0, 100)}
        elif kind == "number":
            prop = {"type": "number", "minimum": 0, "maximum": rng.choice([1, 10, 1000])}
        elif kind == "enum":
            prop = {"enum": rng.sample(WORDS, rng.randint(2, 4))}
        elif kind == "boolean":
            prop = {"type": "boolean"}
        elif kind == "array":
            prop = {"type": "array", "items": {"enum": rng.sample(WORDS, 3)}, "maxItems": rng.randint(1, 3)}
        else:
            prop = _schema(rng, depth + 1)
        props[f"{kind}_{i}"] = prop
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


SCHEMAS = [_schema(random.Random(seed)) for seed in range(20)]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=600)


def _ask(client, schema: dict, index: int) -> str:
    done = client.chat.completions.create(
        model=MLX_ID,
        messages=[{"role": "user", "content": f"Fill in record number {index} as JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": f"record_{index}", "schema": schema, "strict": True},
        },
        temperature=0,
        max_tokens=200,
    )
    assert done.choices[0].finish_reason == "stop"
    return done.choices[0].message.content


def test_twenty_generated_schemas_are_followed_inside_one_batch(client):
    with ThreadPoolExecutor(len(SCHEMAS)) as pool:  # they run together in the batch
        outputs = list(pool.map(lambda item: _ask(client, item[1], item[0]), enumerate(SCHEMAS)))
    for schema, text in zip(SCHEMAS, outputs, strict=True):
        jsonschema.validate(json.loads(text), schema)
    assert len(set(outputs)) > 1


def test_json_object_output_parses_and_a_stream_follows_the_schema_too(client):
    done = client.chat.completions.create(
        model=MLX_ID,
        messages=[
            {
                "role": "user",
                "content": 'What is the capital of France? Answer in JSON with the key "capital".',
            }
        ],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    answer = json.loads(done.choices[0].message.content)
    assert isinstance(answer, dict) and "Paris" in json.dumps(answer)
    schema = SCHEMAS[3]
    chunks = client.chat.completions.create(
        model=MLX_ID,
        messages=[{"role": "user", "content": "A record as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "record", "schema": schema}},
        temperature=0,
        max_tokens=200,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize(
    ("response_format", "fragment"),
    [
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objectz"}}}, "objectz"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "'schema'"),
        ({"type": "grammar"}, "response_format.type 'grammar'"),
        ({"type": "json_object", "schema": {}}, "'response_format.schema'"),
    ],
)
def test_a_format_lmx_cannot_enforce_is_refused_with_the_reason(server, response_format, fragment):
    with server.client() as http:
        r = http.post(
            "/v1/chat/completions",
            json={
                "model": MLX_ID,
                "messages": [{"role": "user", "content": "Hi"}],
                "response_format": response_format,
            },
        )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid-request"
    assert fragment in r.json()["error"]["message"]
