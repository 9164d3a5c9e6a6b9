"""OpenAI's Responses API with the official `openai` SDK, on the real default model: text and
items, streamed events in the published shapes, a function-tool round trip, stored
conversations continued by previous_response_id, retrieve and delete."""

import json
import typing

import jsonschema
import openai
import pytest
from openai.types.responses import ResponseStreamEvent

from tests.conftest import MLX_ID

QUESTION = "What is the capital of France?"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
# The SDK's model of each event type, by its `type`.
EVENTS = {
    typing.get_args(model.model_fields["type"].annotation)[0]: model
    for model in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


def test_a_string_and_items_are_answered(client):
    done = client.responses.create(model=MLX_ID, input=QUESTION, temperature=0, max_output_tokens=24)
    assert done.object == "response" and done.status in ("completed", "incomplete") and done.model == MLX_ID
    assert "Paris" in done.output_text and done.output[0].type == "message"
    assert (
        done.usage.output_tokens > 0
        and done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens
    )
    items = client.responses.create(
        model=MLX_ID,
        instructions="You are a helpful assistant.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
        temperature=0,
        max_output_tokens=24,
    )
    assert "Paris" in items.output_text and items.instructions == "You are a helpful assistant."


def test_the_stream_s_events_have_the_published_shapes_and_add_up(client):
    done = client.responses.create(model=MLX_ID, input=QUESTION, temperature=0, max_output_tokens=16)
    events = list(
        client.responses.create(
            model=MLX_ID, input=QUESTION, temperature=0, max_output_tokens=16, stream=True
        )
    )
    for event in events:
        EVENTS[event.type].model_validate(event.model_dump())  # every required field of its shape
    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == done.output_text == events[-1].response.output_text
    assert kinds.index("response.output_text.done") < kinds.index("response.output_item.done")


def test_a_function_tool_round_trip_through_a_stored_conversation(client):
    first = client.responses.create(
        model=MLX_ID,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_output_tokens=100,
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id and '"city"' in call.arguments
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 degrees."}
    second = client.responses.create(
        model=MLX_ID,
        previous_response_id=first.id,
        input=[output],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_output_tokens=30,
    )
    assert second.output_text.strip() and second.previous_response_id == first.id
    # The same turn sent as items, without the store, reads the same conversation.
    again = client.responses.create(
        model=MLX_ID,
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            output,
        ],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_output_tokens=30,
        store=False,
    )
    assert again.output_text == second.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(again.id)


def test_previous_response_id_continues_the_conversation_from_the_prompt_cache(client):
    first = client.responses.create(
        model=MLX_ID, instructions="Answer briefly.", input=QUESTION, temperature=0, max_output_tokens=16
    )
    second = client.responses.create(
        model=MLX_ID,
        instructions="Answer briefly.",
        previous_response_id=first.id,
        input="And what is the capital of Italy?",
        temperature=0,
        max_output_tokens=16,
    )
    # the first turn is in the second's prompt, and its prefix came from the prompt cache
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens - 1
    assert second.output_text.strip()


def test_text_format_json_schema_is_enforced(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    }
    done = client.responses.create(
        model=MLX_ID,
        input=QUESTION,
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
        temperature=0,
        max_output_tokens=40,
        store=False,
    )
    jsonschema.validate(json.loads(done.output_text), schema)


def test_a_stored_response_is_retrieved_then_deleted(client):
    done = client.responses.create(model=MLX_ID, input=QUESTION, temperature=0, max_output_tokens=8)
    kept = client.responses.retrieve(done.id)
    assert kept.id == done.id and kept.output_text == done.output_text
    client.responses.delete(done.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(done.id)
    with pytest.raises(openai.NotFoundError, match="previous_response_id"):
        client.responses.create(model=MLX_ID, input="More?", previous_response_id=done.id)


def test_what_lmx_cannot_honour_is_refused_by_name_and_recorded(client, server, server_db):
    from monitoring.models import ErrorEvent

    with pytest.raises(openai.BadRequestError, match="'include'"):
        client.responses.create(model=MLX_ID, input=QUESTION, include=["reasoning.encrypted_content"])
    with pytest.raises(openai.BadRequestError, match=r"tools\[0\]\.type"):
        client.responses.create(model=MLX_ID, input=QUESTION, tools=[{"type": "web_search"}])
    rows = ErrorEvent.objects.using(server_db(server)).filter(
        endpoint="POST /v1/responses", code="invalid-request"
    )
    assert rows.count() >= 2
