"""A thinking model's reasoning, kept out of its answer: the text between the markers mlx-lm found
for its tokenizer (`<think>`…`</think>` and the like) goes to reasoning_content."""

from __future__ import annotations

from inference.engine.markers import MarkedSpans


class ReasoningSplitter:
    def __init__(self, tokenizer, prompt_tokens: list[int]):
        # A template may open the thinking block in the prompt (the answer starts inside it).
        opened = tokenizer.rfind_think_start(prompt_tokens) > tokenizer.rfind_think_end(prompt_tokens)
        self.spans = MarkedSpans(tokenizer.think_start, tokenizer.think_end, inside=opened)

    def feed(self, text: str) -> tuple[str, str]:
        """(answer text, reasoning text) of `text`."""
        return _join(self.spans.feed(text))

    def finish(self) -> tuple[str, str]:
        return _join(self.spans.flush())


def _join(pieces) -> tuple[str, str]:
    answer = "".join(text for inside, text in pieces if text and not inside)
    reasoning = "".join(text for inside, text in pieces if text and inside)
    return answer, reasoning


def splitter_for(tokenizer, prompt_tokens: list[int]) -> ReasoningSplitter | None:
    if not getattr(tokenizer, "has_thinking", False):
        return None
    return ReasoningSplitter(tokenizer, prompt_tokens)
