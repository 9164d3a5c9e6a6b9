"""A thinking model through the agent APIs: Anthropic's `thinking` blocks and the Responses API's
`reasoning` items carry what the model thought, apart from its answer (a tiny random-weight model
whose template opens a `<think>` block it never closes, so all it says is thinking)."""

import anthropic
import openai
import pytest

from tests import tiny_models
from tests.e2e.test_responses import EVENTS

MODEL = "tiny-thinking"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def thinking_server(tmp_path_factory, model_store):
    from tests.lmx_server import LMXServer

    store = tmp_path_factory.mktemp("thinking-store")
    tiny_models.thinking_model(store / MODEL, model_store)
    srv = LMXServer(tmp_path_factory.mktemp("thinking-srv"), store, default_model=MODEL)
    srv.start(wait_ready=True)
    yield srv
    srv.stop()


def test_anthropic_thinking_blocks_and_thinking_turned_off(thinking_server):
    client = anthropic.Anthropic(base_url=thinking_server.url, api_key="x", max_retries=0, timeout=120)
    thought = client.messages.create(
        model=MODEL,
        max_tokens=10,
        messages=HI,
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"temperature": 0},
    )
    assert thought.content[0].type == "thinking" and thought.content[0].thinking
    assert not "".join(b.text for b in thought.content if b.type == "text")
    with client.messages.stream(
        model=MODEL,
        max_tokens=10,
        messages=HI,
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"temperature": 0},
    ) as stream:
        deltas = [
            e.delta.thinking
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "thinking_delta"
        ]
    assert "".join(deltas) == thought.content[0].thinking
    plain = client.messages.create(
        model=MODEL, max_tokens=10, messages=HI, thinking={"type": "disabled"}, extra_body={"temperature": 0}
    )
    assert [b.type for b in plain.content] == ["text"] and plain.content[0].text


def test_responses_reasoning_items_in_the_answer_and_the_stream(thinking_server):
    client = openai.OpenAI(base_url=thinking_server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    done = client.responses.create(model=MODEL, input="Hi", temperature=0, max_output_tokens=10, store=False)
    (reasoning,) = [item for item in done.output if item.type == "reasoning"]
    assert reasoning.content[0].type == "reasoning_text" and reasoning.content[0].text
    events = list(
        client.responses.create(
            model=MODEL, input="Hi", temperature=0, max_output_tokens=10, store=False, stream=True
        )
    )
    for event in events:
        EVENTS[event.type].model_validate(event.model_dump())
    streamed = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert streamed == reasoning.content[0].text
    assert events[-1].response.output[0].type == "reasoning"
