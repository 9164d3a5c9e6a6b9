"""LangChain's OpenAI chat model against LMX unchanged: tools bound to it get called, and
structured output comes back as a valid object (the real default model)."""

import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.conftest import MLX_ID


class City(BaseModel):
    """A city and the country it is in."""

    name: str = Field(max_length=30)
    country: str = Field(max_length=30)


@pytest.fixture(scope="module")
def chat(server):
    return ChatOpenAI(
        model=MLX_ID, base_url=server.url + "/v1", api_key="not-needed", temperature=0, max_tokens=80
    )


def test_bind_tools_gets_a_tool_call(chat):
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "sunny"

    answer = chat.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    (call,) = answer.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output_returns_a_valid_object(chat, method):
    city = chat.with_structured_output(City, method=method).invoke("Name the capital of France.")
    assert isinstance(city, City) and city.name and city.country
