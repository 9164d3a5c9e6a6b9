"""Nothing silently ignored: a field LMX does not honour is refused by name, recorded, and the
server stays up; the fields accepted on purpose are; an unknown API path answers JSON."""

import openai
import pytest

from tests.conftest import MLX_ID

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

# OpenAI chat-request fields LMX does not honour yet, each with a valid value.
CHAT_UNHONOURED = {
    "functions": [TOOL["function"]],
    "function_call": "auto",
    "modalities": ["text"],
    "audio": {"voice": "alloy", "format": "wav"},
    "prediction": {"type": "content", "content": "Paris"},
    "web_search_options": {},
    "verbosity": "low",
}
COMPLETIONS_UNHONOURED = {"suffix": " and so on.", "best_of": 2}


def _recorded(server_db, server, endpoint: str, name: str) -> bool:
    from monitoring.models import ErrorEvent

    rows = ErrorEvent.objects.using(server_db(server)).filter(code="invalid-request", endpoint=endpoint)
    return rows.filter(message__contains=f"'{name}'").exists()


@pytest.mark.parametrize(("name", "value"), CHAT_UNHONOURED.items())
def test_an_unhonoured_chat_field_is_refused_by_name_and_recorded(server, server_db, name, value):
    with server.client() as http:
        r = http.post("/v1/chat/completions", json={"model": MLX_ID, "messages": QUESTION, name: value})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid-request" and f"'{name}'" in error["message"]
        assert "not supported" in error["message"]
        assert http.get("/readyz").status_code == 200
    assert _recorded(server_db, server, "POST /v1/chat/completions", name)


@pytest.mark.parametrize(("name", "value"), COMPLETIONS_UNHONOURED.items())
def test_an_unhonoured_completions_field_is_refused_by_name(server, server_db, name, value):
    with server.client() as http:
        r = http.post("/v1/completions", json={"model": MLX_ID, "prompt": "Once upon a time", name: value})
    assert r.status_code == 400 and f"'{name}'" in r.json()["error"]["message"]
    assert _recorded(server_db, server, "POST /v1/completions", name)


def test_nested_fields_are_named_with_their_place(server):
    with server.client() as http:
        message = {"role": "assistant", "content": "Hi", "audio": {"id": "audio_1"}}
        r = http.post("/v1/chat/completions", json={"model": MLX_ID, "messages": [*QUESTION, message]})
        options = http.post(
            "/v1/chat/completions",
            json={"model": MLX_ID, "messages": QUESTION, "stream": True, "stream_options": {"x": 1}},
        )
        embeddings = http.post("/v1/embeddings", json={"model": MLX_ID, "input": "a cat", "truncate": True})
    assert r.status_code == 400 and "'messages[1].audio'" in r.json()["error"]["message"]
    assert options.status_code == 400 and "'stream_options.x'" in options.json()["error"]["message"]
    assert embeddings.status_code == 400 and "'truncate'" in embeddings.json()["error"]["message"]


def test_the_official_client_hears_the_refusal_and_fields_accepted_on_purpose_pass(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed")
    with pytest.raises(openai.BadRequestError, match="'prediction'"):
        client.chat.completions.create(
            model=MLX_ID, messages=QUESTION, prediction={"type": "content", "content": "Paris"}
        )
    # Accepted and ignored on purpose (README), and fields that ask for nothing.
    done = client.chat.completions.create(
        model=MLX_ID,
        messages=[{"role": "user", "content": QUESTION[0]["content"], "name": "ada"}],
        max_tokens=8,
        temperature=0,
        user="someone",
        metadata={"run": "1"},
        store=False,
        logprobs=False,
        tool_choice="none",
    )
    assert "Paris" in done.choices[0].message.content
    assert done.choices[0].message.refusal is None
    assert "refusal" in done.choices[0].message.model_dump()


def test_an_unknown_api_path_answers_the_json_error_body(server):
    with server.client() as http:
        missing = http.post("/v1/assistants", json={"model": MLX_ID})
        nested = http.get("/v1/models/extra/part")
    for r in (missing, nested):
        assert r.status_code == 404 and r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "invalid-request"
        assert "There is no endpoint at" in r.json()["error"]["message"]


def test_template_variables_and_reasoning_effort_reach_the_template(server):
    """SmolLM2 does not think: its answer stays in content, no reasoning_content appears."""
    body = {"model": MLX_ID, "messages": QUESTION, "max_tokens": 8, "temperature": 0}
    with server.client() as http:
        plain = http.post("/v1/chat/completions", json=body).json()
        passed = http.post(
            "/v1/chat/completions",
            json={**body, "chat_template_kwargs": {"enable_thinking": False}, "reasoning_effort": "low"},
        ).json()
        bad = http.post("/v1/chat/completions", json={**body, "reasoning_effort": "extreme"})
        reserved = http.post("/v1/chat/completions", json={**body, "chat_template_kwargs": {"messages": []}})
    assert passed["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert "reasoning_content" not in passed["choices"][0]["message"]
    assert bad.status_code == 400 and "'reasoning_effort' must be one of" in bad.json()["error"]["message"]
    assert reserved.status_code == 400 and "may not set messages" in reserved.json()["error"]["message"]
