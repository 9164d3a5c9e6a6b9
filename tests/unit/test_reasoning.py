"""A thinking model's reasoning goes to reasoning_content, out of its answer (a tiny random Llama
with SmolLM2's tokenizer plus `<think>` / `</think>` tokens and a template that opens the block)."""

import asyncio

import pytest

from inference.client.inprocess import InProcessEngineClient
from inference.engine.reasoning import ReasoningSplitter
from inference.wire import Done, GenerationRequest, Reasoning, Text, TokenizeKind
from tests import tiny_models
from tests.conftest import running_engine


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory, model_store):
    return tiny_models.thinking_model(tmp_path_factory.mktemp("models") / "tiny-thinking", model_store)


@pytest.fixture(scope="module")
def client(thinking_model):
    with running_engine(InProcessEngineClient, max_concurrent=2, max_queue=2) as engine:
        engine.load(thinking_model).result()
        yield engine


def test_reasoning_and_answer_are_split_wherever_the_text_is_cut(client):
    tokenizer = client.engine.loaded.tokenizer
    assert tokenizer.has_thinking and tokenizer.think_start == "<think>"
    opened = tokenizer.encode("<|im_start|>assistant\n<think>\n", add_special_tokens=False)
    text = "Two and two.\n</think>\n\nThe answer is 4."
    for cut in (2, 14, 15, 20, len(text) - 3):
        splitter = ReasoningSplitter(tokenizer, opened)
        pieces = [splitter.feed(text[:cut]), splitter.feed(text[cut:]), splitter.finish()]
        assert "".join(a for a, _ in pieces) == "\n\nThe answer is 4."
        assert "".join(r for _, r in pieces) == "Two and two.\n"
    closed = ReasoningSplitter(
        tokenizer, tokenizer.encode("<think>\n\n</think>\n\n", add_special_tokens=False)
    )
    assert closed.feed("Plain answer.") == ("Plain answer.", "")


def _events(client, **template_kwargs):
    async def run():
        loaded = client.loaded
        payload = {"messages": [{"role": "user", "content": "Hi"}], "template_kwargs": template_kwargs}
        prompt = await asyncio.wrap_future(client.tokenize(loaded, TokenizeKind.CHAT, payload))
        request = GenerationRequest(prompt, 12, temperature=0, ignore_eos=True, split_reasoning=True)
        return [event async for event in client.submit(request, model=loaded).events()]

    return asyncio.run(run())


def test_a_chat_that_opens_thinking_reasons_and_one_that_turns_it_off_answers(client):
    thinking = _events(client)
    answering = _events(client, enable_thinking=False)  # chat_template_kwargs reach the template
    assert isinstance(thinking[-1], Done) and isinstance(answering[-1], Done)
    reasoned = "".join(e.text for e in thinking if isinstance(e, Reasoning))
    assert reasoned and not any(isinstance(e, Text) for e in thinking)  # random weights never close it
    assert "".join(e.text for e in answering if isinstance(e, Text)) and not any(
        isinstance(e, Reasoning) for e in answering
    )
