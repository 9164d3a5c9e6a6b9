"""Tool calls with a chat template that takes tools (a tiny random-weight Llama with SmolLM2's
tokenizer and a Hermes-style template, the family mlx-lm reads with its `json_tools` parser)."""

import asyncio
import json

import jsonschema
import pytest

from inference.api.tools import tool_use
from inference.client.inprocess import InProcessEngineClient
from inference.engine import tokens
from inference.engine.tool_calls import ToolCallExtractor
from inference.wire import Done, GenerationRequest, TokenizeKind, ToolCallFormat, ToolCalls
from tests.conftest import running_engine
from tests.tiny_models import with_smollm_tokenizer

# As Qwen2.5 / Hermes templates render tools and calls (mlx-lm infers `json_tools` from it).
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools: <tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>"
    "<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}"
    "{% for tool_call in m.get('tool_calls') or [] %}{% set tool_call = tool_call.function %}"
    '<tool_call>{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}'
    "</tool_call>{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Rome"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER}}
]
QUESTION = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, model_store):
    folder = tmp_path_factory.mktemp("models") / "tiny-tools"
    return with_smollm_tokenizer(folder, model_store, template=TOOL_TEMPLATE, vocab_size=49152)


@pytest.fixture(scope="module")
def client(tool_model):
    with running_engine(InProcessEngineClient, max_concurrent=2, max_queue=2) as engine:
        engine.load(tool_model).result()
        yield engine


def test_the_template_renders_the_tools_and_mlx_lm_knows_the_family(client):
    tokenizer = client.engine.loaded.tokenizer
    assert tokenizer.has_tool_calling and tokenizer.tool_call_start == "<tool_call>"
    use = tool_use([t["function"] for t in TOOLS], "auto")
    prompt = tokenizer.decode(tokens.tokenize_chat(tokenizer, QUESTION, use.functions, use.format))
    assert '"name": "get_weather"' in prompt and "<tools>" in prompt
    assert "You can call these tools" not in prompt  # LMX's generic description is not needed


def test_the_family_s_calls_are_read_out_of_text_split_anywhere(client):
    tokenizer = client.engine.loaded.tokenizer
    text = 'Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call> Done.'
    for cut in (3, 16, 17, 30, len(text) - 12):
        extractor = ToolCallExtractor(ToolCallFormat.MARKED, tokenizer, [t["function"] for t in TOOLS])
        shown, calls = extractor.feed(text[:cut])
        more_text, more_calls = extractor.feed(text[cut:])
        rest, last = extractor.finish()
        calls = calls + more_calls + last
        assert shown + more_text + rest == "Let me look.  Done."
        assert [(c.name, json.loads(c.arguments)) for c in calls] == [
            ("get_weather", {"city": "Paris", "days": 2})
        ]


def test_an_earlier_call_goes_back_through_the_template(client):
    tokenizer = client.engine.loaded.tokenizer
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Rome", "days": 1}'},
    }
    messages = [
        *QUESTION,
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
    ]
    prompt = tokenizer.decode(tokens.tokenize_chat(tokenizer, messages, [t["function"] for t in TOOLS]))
    assert (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome", "days": 1}}</tool_call>' in prompt
    )


def test_a_required_call_from_random_weights_is_held_to_the_schema(client):
    use = tool_use([t["function"] for t in TOOLS], "required", parallel=False)

    async def run():
        loaded = client.loaded
        payload = {"messages": QUESTION, "tools": use.functions, "tool_format": use.format}
        prompt = await asyncio.wrap_future(client.tokenize(loaded, TokenizeKind.CHAT, payload))
        request = GenerationRequest(
            prompt,
            60,
            temperature=0.8,
            seed=3,
            grammar=use.grammar,
            tool_format=use.format,
            tools=use.functions,
        )
        return [event async for event in client.submit(request, model=loaded).events()]

    events = asyncio.run(run())
    (made,) = [e for e in events if isinstance(e, ToolCalls)]
    (call,) = made.calls
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), WEATHER)
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "tool_calls"
