"""Stop strings never leak, including when split across tokens."""

import pytest

from inference.engine.slot import StopFilter


@pytest.mark.parametrize(
    ("pieces", "stops", "expected", "hit"),
    [
        (["Hello", " wor", "ld", "!"], ["world"], "Hello ", True),
        (["The cap", "ital is Par", "is. More"], ["Paris"], "The capital is ", True),
        (["abc", "def"], ["xyz"], "abcdef", False),
        (["a<", "|e", "nd|>tail"], ["<|end|>"], "a", True),
        (["a<", "b"], ["<|end|>"], "a<b", False),
    ],
)
def test_stop_filter(pieces, stops, expected, hit):
    f = StopFilter(stops)
    out, was_hit = "", False
    for piece in pieces:
        text, was_hit = f.feed(piece)
        out += text
        if was_hit:
            break
    if not was_hit:
        out += f.flush()
    assert out == expected and was_hit is hit
