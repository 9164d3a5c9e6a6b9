"""Splitting a text stream at a pair of markers that may arrive cut across tokens."""

from __future__ import annotations


def partial_suffix(text: str, marker: str) -> int:
    """How many characters at the end of `text` could begin `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class MarkedSpans:
    """Feeds text in; yields (inside, text) pieces: `inside` for what stands between `start` and
    `end`. Text that may be the start of the next marker is held back until it is known."""

    def __init__(self, start: str, end: str, *, inside: bool = False):
        self.start, self.end = start, end
        self.inside = inside
        self.pending = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        self.pending += text
        pieces = []
        while True:
            marker = self.end if self.inside else self.start
            at = self.pending.find(marker)
            if at < 0:
                keep = partial_suffix(self.pending, marker)
                cut = len(self.pending) - keep
                if cut:
                    pieces.append((self.inside, self.pending[:cut]))
                self.pending = self.pending[cut:]
                return pieces
            if at:
                pieces.append((self.inside, self.pending[:at]))
            pieces.append((self.inside, None))  # the marker: a span ends or starts here
            self.pending = self.pending[at + len(marker) :]
            self.inside = not self.inside

    def flush(self) -> list[tuple[bool, str]]:
        rest, self.pending = self.pending, ""
        return [(self.inside, rest)] if rest else []
