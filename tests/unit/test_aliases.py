"""Model aliases: configured pairs or a file of them, and those given at load, resolve in any case."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from inference import aliases


@pytest.fixture(autouse=True)
def no_added_aliases():
    yield
    aliases._added.clear()


def test_pairs_and_a_file_of_lines_are_read(settings, tmp_path):
    settings.LMX_MODEL_ALIASES = "gpt-4o-mini=SmolLM2-135M-Instruct, Claude=qwen3"
    assert aliases.resolve("GPT-4o-mini ") == "SmolLM2-135M-Instruct" and aliases.resolve("claude") == "qwen3"
    assert aliases.resolve("SmolLM2-135M-Instruct") == "SmolLM2-135M-Instruct"  # not an alias: itself
    listing = tmp_path / "aliases.txt"
    listing.write_text("# local stand-ins\nsonnet = SmolLM2-135M-Instruct-Q4_1.gguf\n\nhaiku=tiny  # small\n")
    settings.LMX_MODEL_ALIASES = str(listing)
    assert aliases.all_aliases() == {"sonnet": "SmolLM2-135M-Instruct-Q4_1.gguf", "haiku": "tiny"}


@pytest.mark.parametrize("value", ["just-a-name", "a=", "=b", "a=b,c"])
def test_a_malformed_setting_is_refused_at_start(settings, value):
    settings.LMX_MODEL_ALIASES = value
    with pytest.raises(ImproperlyConfigured, match="LMX_MODEL_ALIASES"):
        aliases.all_aliases()


def test_an_alias_given_at_load_wins_over_a_configured_one(settings):
    settings.LMX_MODEL_ALIASES = "fast=one"
    aliases.add("Fast", "two")
    assert aliases.resolve("fast") == "two"
