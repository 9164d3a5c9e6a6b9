"""Anthropic's Messages API with the official `anthropic` SDK, on the real default model."""

import json

import anthropic
import jsonschema
import pytest

from tests.conftest import MLX_ID

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "input_schema": {  # a bound on the string: a 135M model may otherwise run on inside it
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
GREEDY = {"temperature": 0}  # the SDK (2.x) has no sampling arguments: they travel in the body


@pytest.fixture(scope="module")
def client(server):
    return anthropic.Anthropic(base_url=server.url, api_key="not-needed", max_retries=0, timeout=300)


def _text(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_a_message_is_answered_and_its_stream_says_the_same(client):
    done = client.messages.create(model=MLX_ID, max_tokens=24, messages=QUESTION, extra_body=GREEDY)
    assert done.type == "message" and done.role == "assistant" and done.model == MLX_ID
    assert "Paris" in _text(done) and done.stop_reason in ("end_turn", "max_tokens")
    assert done.usage.output_tokens > 0 and done.usage.input_tokens + done.usage.cache_read_input_tokens > 10
    with client.messages.stream(model=MLX_ID, max_tokens=24, messages=QUESTION, extra_body=GREEDY) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == _text(done) == _text(final)
    assert final.stop_reason == done.stop_reason and final.usage.output_tokens == done.usage.output_tokens


def test_the_streamed_events_come_in_anthropics_order(client):
    kinds = []
    with client.messages.stream(model=MLX_ID, max_tokens=8, messages=QUESTION, extra_body=GREEDY) as stream:
        for event in stream:
            if event.type in (
                "message_start",
                "content_block_start",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ):
                kinds.append(event.type)
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_a_stop_sequence_is_named(client):
    done = client.messages.create(
        model=MLX_ID, max_tokens=40, messages=QUESTION, stop_sequences=["Paris"], extra_body=GREEDY
    )
    assert done.stop_reason == "stop_sequence" and done.stop_sequence == "Paris"
    assert "Paris" not in _text(done)


def test_a_tool_round_trip(client):
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    call = client.messages.create(
        model=MLX_ID,
        max_tokens=100,
        messages=ask,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        extra_body=GREEDY,
    )
    assert call.stop_reason == "tool_use"
    (use,) = [block for block in call.content if block.type == "tool_use"]
    assert use.name == "get_weather" and isinstance(use.input.get("city"), str) and use.id
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 degrees."}
    answer = client.messages.create(
        model=MLX_ID,
        max_tokens=40,
        messages=[
            *ask,
            {"role": "assistant", "content": call.content},
            {"role": "user", "content": [result]},
        ],
        tools=[WEATHER],
        tool_choice={"type": "none"},  # the answer now, in words
        extra_body=GREEDY,
    )
    assert answer.stop_reason in ("end_turn", "max_tokens") and _text(answer).strip()
    assert not [block for block in answer.content if block.type == "tool_use"]
    # Streamed, the call arrives as a tool_use block with its input as JSON deltas.
    with client.messages.stream(
        model=MLX_ID,
        max_tokens=60,
        messages=ask,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body=GREEDY,
    ) as stream:
        streamed = stream.get_final_message()
    (again,) = [block for block in streamed.content if block.type == "tool_use"]
    assert again.name == "get_weather" and again.input == use.input and streamed.stop_reason == "tool_use"


def test_output_config_format_is_enforced(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}, "country": {"enum": ["France", "Italy"]}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    done = client.messages.create(
        model=MLX_ID,
        max_tokens=60,
        messages=QUESTION,
        extra_body={**GREEDY, "output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )
    jsonschema.validate(json.loads(_text(done)), schema)
    with pytest.raises(anthropic.BadRequestError, match=r"output_config\.format\.schema"):
        client.messages.create(
            model=MLX_ID,
            max_tokens=4,
            messages=QUESTION,
            extra_body={"output_config": {"format": {"type": "json_schema", "schema": {"type": "objectz"}}}},
        )


def test_count_tokens_is_what_the_prompt_then_costs(client):
    system = "You answer in one word."
    counted = client.messages.count_tokens(model=MLX_ID, messages=QUESTION, system=system)
    done = client.messages.create(
        model=MLX_ID, max_tokens=4, messages=QUESTION, system=system, extra_body=GREEDY
    )
    assert counted.input_tokens == done.usage.input_tokens + done.usage.cache_read_input_tokens


def test_the_next_turn_reads_the_conversation_from_the_prompt_cache(client):
    system = "You are a geography tutor. Answer in one short sentence."
    first = client.messages.create(
        model=MLX_ID, max_tokens=12, system=system, messages=QUESTION, extra_body=GREEDY
    )
    turn = [
        *QUESTION,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": "And Italy?"},
    ]
    second = client.messages.create(
        model=MLX_ID, max_tokens=12, system=system, messages=turn, extra_body=GREEDY
    )
    first_prompt = first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens >= first_prompt - 1  # the first turn's prompt, reused
    assert second.usage.input_tokens > 0  # and only the rest computed


def test_errors_are_the_sdks_typed_exceptions_and_are_recorded(client, server, server_db):
    from monitoring.models import ErrorEvent

    with pytest.raises(anthropic.NotFoundError, match="not available"):
        client.messages.create(model="no-such-model", max_tokens=4, messages=QUESTION)
    with pytest.raises(anthropic.BadRequestError, match="'mcp_servers'"):
        client.messages.create(model=MLX_ID, max_tokens=4, messages=QUESTION, extra_body={"mcp_servers": []})
    with server.client() as http:
        r = http.post("/v1/messages", json={"model": MLX_ID, "messages": QUESTION})
        assert r.status_code == 400
        assert r.json() == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": r.json()["error"]["message"]},
        }
        assert "Missing field 'max_tokens'" in r.json()["error"]["message"]
        assert http.get("/readyz").status_code == 200
    rows = ErrorEvent.objects.using(server_db(server)).filter(endpoint="POST /v1/messages")
    assert rows.filter(code="model-not-found").exists() and rows.filter(code="invalid-request").count() >= 2
