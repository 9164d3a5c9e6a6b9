"""The protocol models: what a client hears when a body is wrong, and what a valid one becomes."""

import pytest

from inference.api.protocol.chat import ChatCompletionRequest, chat_request
from inference.api.protocol.completions import completion_request
from inference.api.protocol.retrieval import embedding_request, rerank_request
from inference.errors import InvalidRequest

Q = [{"role": "user", "content": "hi"}]

REFUSED = [
    (chat_request, {"model": "m", "messages": Q, "top_p": True}, "Field 'top_p' must be a number, got bool."),
    (chat_request, {"model": "m", "messages": Q, "seed": 1.5}, "Field 'seed' must be an integer, got float."),
    (
        chat_request,
        {"model": "m", "messages": Q, "modalities": ["text"], "audio": {}},
        "Fields 'audio', 'modalities' are not supported by LMX",
    ),
    (chat_request, {"name": "x", "messages": Q}, "Missing field 'model'"),
    (chat_request, {"model": "  ", "messages": Q}, "Field 'model' must be a non-empty string"),
    (
        chat_request,
        {"model": "m", "messages": [{"role": "tool", "content": "x", "tool_calls": []}]},
        "messages[0].tool_calls belongs on an assistant message.",
    ),
    (
        chat_request,
        {"model": "m", "messages": [*Q, {"role": "user", "content": [{"type": "image_url"}]}]},
        "messages[1].content must be a string or a list of text parts",
    ),
    (
        chat_request,
        {"model": "m", "messages": Q, "response_format": {"type": "json_schema"}},
        "response_format.json_schema goes with type 'json_schema'",
    ),
    (
        chat_request,
        {"model": "m", "messages": Q, "tools": [{"type": "function", "function": {"name": "f"}}] * 2},
        "the function name 'f' is given twice",
    ),
    (completion_request, {"model": "m", "prompt": ["a"] * 65}, "at most 64 prompts"),
    (completion_request, {"model": "m", "prompt": "x", "stream_options": {}}, "only allowed when 'stream'"),
    (embedding_request, {"model": "m", "input": [True]}, "Field 'input' must be a string"),
    (
        rerank_request,
        {"model": "m", "query": "q", "documents": [{"text": "a", "id": 1}]},
        "documents[0] must be a non-empty string or {'text'",
    ),
]


@pytest.mark.parametrize(("parse", "body", "fragment"), REFUSED)
def test_a_wrong_body_is_refused_naming_the_field(parse, body, fragment):
    with pytest.raises(InvalidRequest) as refused:
        parse(body)
    assert fragment in refused.value.message


def test_null_and_the_values_that_ask_for_nothing_are_read_as_absent():
    req = chat_request(
        {"model": " m ", "messages": Q, "stop": None, "functions": [], "logprobs": False, "user": "u"}
    )
    assert req.model == "m" and req.params.stop == [] and req.params.logprobs is None


def test_a_valid_body_becomes_what_serving_takes():
    req = chat_request(
        {
            "model": "m",
            "messages": [
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
                },
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ],
            "max_completion_tokens": 7,
            "max_tokens": 99,
            "stop": "END",
            "seed": -1,
            "logit_bias": {"5": -100},
            "logprobs": True,
            "top_logprobs": 2,
            "reasoning_effort": "low",
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert req.messages[0] == {"role": "system", "content": "Be brief."}
    assert req.messages[1]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert req.messages[1]["content"] == "" and req.messages[2]["tool_call_id"] == "c1"
    assert req.params.max_tokens == 7 and req.params.stop == ["END"] and req.params.logit_bias == {5: -100.0}
    assert req.params.seed == 2**63 - 1 and req.params.logprobs == 2
    assert req.template_kwargs == {"reasoning_effort": "low"} and req.stream and req.include_usage


def test_the_request_schema_names_what_is_accepted():
    schema = ChatCompletionRequest.model_json_schema()
    assert schema["additionalProperties"] is False
    assert {"messages", "tools", "response_format", "logprobs", "user"} <= set(schema["properties"])
    assert schema["properties"]["temperature"]["maximum"] == 2


@pytest.mark.parametrize(
    ("sent", "seconds"),
    [
        (300, 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        (0, 0.0),
        (-1, -1.0),
        ("-5m", -1.0),
    ],
)
def test_keep_alive_takes_what_ollama_takes(sent, seconds):
    assert chat_request({"model": "m", "messages": Q, "keep_alive": sent}).keep_alive == seconds
    assert embedding_request({"model": "m", "input": "x", "keep_alive": sent}).keep_alive == seconds


@pytest.mark.parametrize("sent", ["5 minutes", "m5", True, "", [1]])
def test_a_keep_alive_that_is_no_duration_is_refused_by_name(sent):
    with pytest.raises(InvalidRequest, match="keep_alive"):
        chat_request({"model": "m", "messages": Q, "keep_alive": sent})


@pytest.mark.parametrize("sent", ["¢{4ò¢", "{field}", "}{", "{0}"])
def test_braces_in_a_refused_value_are_quoted_not_formatted(sent):
    """The message quotes the client's value; braces in it once raised ValueError (a 500)."""
    with pytest.raises(InvalidRequest) as refused:
        chat_request({"model": "m", "messages": Q, "keep_alive": sent})
    assert "keep_alive" in refused.value.message and "is not a duration" in refused.value.message
