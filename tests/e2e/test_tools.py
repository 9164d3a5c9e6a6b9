"""Tool calling on the real default model through the official `openai` SDK. SmolLM2's chat
template has no tool support, so LMX describes the tools in its system message; with
tool_choice `required` or a named function the call is held to the tool's schema by a grammar."""

import json

import jsonschema
import openai
import pytest

from tests.conftest import MLX_ID

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 30}},
                "required": ["city"],
            },
        },
    },
]
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


def _call(client, **kw):
    return client.chat.completions.create(
        model=MLX_ID, messages=QUESTION, tools=TOOLS, temperature=0, max_tokens=100, **kw
    )


def test_a_required_call_round_trip(client):
    first = _call(client, tool_choice="required", parallel_tool_calls=False)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in {"get_weather", "get_time"}
    arguments = json.loads(call.function.arguments)
    schema = WEATHER if call.function.name == "get_weather" else TOOLS[1]["function"]["parameters"]
    jsonschema.validate(arguments, schema)
    # The tool's answer goes back; the model answers in text.
    result = {
        "role": "tool",
        "tool_call_id": call.id,
        "content": json.dumps({"temperature_c": 21, "sky": "sunny"}),
    }
    final = client.chat.completions.create(
        model=MLX_ID,
        messages=[*QUESTION, choice.message.model_dump(exclude_none=True), result],
        tools=TOOLS,
        temperature=0,
        max_tokens=40,
    )
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls


def test_a_named_call_streams_as_openai_streams_it(client):
    named = {"type": "function", "function": {"name": "get_weather"}}
    plain = _call(client, tool_choice=named)
    (expected,) = plain.choices[0].message.tool_calls
    assert expected.function.name == "get_weather"
    jsonschema.validate(json.loads(expected.function.arguments), WEATHER)
    chunks = [c for c in _call(client, tool_choice=named, stream=True) if c.choices]
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    opening, arguments = deltas  # the id and name first, then the arguments
    assert opening[0].index == 0 and opening[0].id and opening[0].function.name == "get_weather"
    assert opening[0].function.arguments == "" and arguments[0].id is None
    assert arguments[0].function.arguments == expected.function.arguments  # greedy: the same call
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_required_with_parallel_calls_returns_a_list(client):
    calls = _call(client, tool_choice="required").choices[0].message.tool_calls
    assert len(calls) >= 1 and all(c.function.name in {"get_weather", "get_time"} for c in calls)
    assert len({c.id for c in calls}) == len(calls)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope', which is not among"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
        ({"tools": None, "tool_choice": "required"}, "'tools' offers none"),
        ({"response_format": {"type": "json_object"}}, "cannot be combined"),
        ({"tool_choice": "sometimes"}, "Field 'tool_choice' must be"),
    ],
)
def test_tool_fields_lmx_cannot_honour_are_refused_with_the_reason(server, fields, fragment):
    body = {"model": MLX_ID, "messages": QUESTION, "tools": TOOLS, **fields}
    with server.client() as http:
        r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid-request"
    assert fragment in r.json()["error"]["message"]
