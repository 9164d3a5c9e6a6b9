"""How many waiting prompts one prefill round of the batch takes (reads mlx-lm 0.32.2's queue).

mlx-lm prefills at most eight prompts a round, with a decoding step between rounds, so prompts
arriving together get their first tokens spread over the rounds. A round here takes more while
their padded chunks stay within ROUND_TOKENS, what a long prompt's round computed when its chunk
was 2,048 tokens; never fewer than eight. Measured: docs/BENCHMARKS.md, "GPU: session 12". The
chunk a long prompt advances by each round is the batch's `prefill_step_size` (LMX_PREFILL_CHUNK):
it bounds how long the streams decoding wait, and is separate from this budget, so short prompts
arriving together still share one round.
"""

from __future__ import annotations

FLOOR = 8  # mlx-lm's default prefill_batch_size
ROUND_TOKENS = 2048  # padded prompt tokens one round may hold


def _chunk(segments: list[list[int]], step: int) -> int:
    """Tokens the next round prefills for a sequence: none when only its last token is left
    (that one goes straight to decoding)."""
    if not segments or (len(segments) == 1 and len(segments[0]) <= 1):
        return 0
    return min(len(segments[0]), step)


def prefill_width(batch) -> int:
    """The prompts the next round may hold, those already in it included."""
    budget, step = ROUND_TOKENS, batch.prefill_step_size
    width = len(batch._prompt_batch)
    longest = max((_chunk(seq[0], step) for seq in batch._currently_processing), default=0)
    for waiting in batch._unprocessed_sequences:
        if width >= batch.completion_batch_size:  # the batch could not take more anyway
            break
        chunk = _chunk(waiting[1], step)
        if (width + 1) * max(longest, chunk) > budget:
            break
        width += 1
        longest = max(longest, chunk)
    return max(FLOOR, width)


def decoding(batch) -> bool:
    """Whether the next round decodes a stream: one in the batch, or one that only has its last
    prompt token left (a stream decoded alone joins this way and goes straight to decoding)."""
    if len(batch._generation_batch):
        return True
    waiting = [seq[1] for seq in batch._unprocessed_sequences] + [
        seq[0] for seq in batch._currently_processing
    ]
    return any(_chunk(segments, 1) == 0 for segments in waiting)


def widen(batch) -> None:
    """Before each `batch.next()`: set how many prompts its round may take."""
    batch.prefill_batch_size = prefill_width(batch)


DEFAULT_CHUNK = 2048  # mlx-lm's: what a round prefills when nothing is decoding
GAP_RATIO = 3.0  # auto: a round with prefill may take this many times a decoding step alone
MIN_CHUNK = 32
EMA = 0.3  # weight of the newest measurement


def chunk_floor() -> int:
    """The smallest chunk `auto` paces down to. On CUDA each round of prefill builds attention
    graphs for its new lengths (~0.3 s): chunks of ~100 tokens took an 8,000-token prompt 16x its
    time alone, 1,024 took 1.7x (docs/BENCHMARKS.md, "Prefill between decoding steps"). On the CPU
    a round costs what its tokens do, so pacing goes down to MIN_CHUNK. Metal: not measured."""
    import mlx.core as mx

    if mx.default_device() == mx.cpu:
        return MIN_CHUNK
    return 1024 if mx.cuda.is_available() else 256


def group_chunk() -> int:
    """A distributed group's chunk while streams decode, when LMX_PREFILL_CHUNK is auto: what
    the pacer starts from before it has measured anything (its ranks cannot pace by their own
    clocks and stay in step)."""
    return max(chunk_floor(), 8 * MIN_CHUNK)


def prefill_chunk() -> int | None:
    """LMX_PREFILL_CHUNK: a fixed number of prompt tokens a round prefills while streams decode,
    or None for `auto` (Pacer)."""
    from inference import conf

    chosen = str(conf.get("LMX_PREFILL_CHUNK")).lower()
    return None if chosen == "auto" else int(chosen)


class Pacer:
    """The prompt tokens the batch's next round prefills. Nothing decoding: DEFAULT_CHUNK (the
    prompt at full speed). Streams decoding: a fixed chunk, or with `auto` as many tokens as keep
    the round within GAP_RATIO times a decoding step without prefill, from the measured time of
    both (an average over recent rounds), so the streams' gap between tokens stays bounded on any
    machine; the budget is shared by the prompts of the round."""

    def __init__(self, fixed: int | None, floor: int = MIN_CHUNK):
        self.fixed = fixed
        self.floor = floor
        self.step_s: float | None = None  # a round that only decodes
        self.token_s: float | None = None  # what each prefilled token adds to a decoding round

    def chunk(self, *, decoding: bool, prompts: int) -> int:
        if not decoding:
            return DEFAULT_CHUNK
        if self.fixed is not None:
            budget = self.fixed
        elif self.step_s is None:
            budget = max(self.floor, 8 * MIN_CHUNK)  # nothing measured yet
        elif self.token_s is None:
            budget = self.floor  # the first round that prefills measures a token's cost: the least
        else:
            budget = max(self.floor, int((GAP_RATIO - 1) * self.step_s / self.token_s))
        share = budget // max(1, min(prompts, FLOOR))
        return max(MIN_CHUNK, min(DEFAULT_CHUNK, share // MIN_CHUNK * MIN_CHUNK))

    def observe(self, seconds: float, *, decoding: bool, prompt_tokens: int) -> None:
        """One round: its wall time, whether it decoded, the prompt tokens it prefilled."""
        if not decoding:
            return
        if prompt_tokens == 0:
            self.step_s = _average(self.step_s, seconds)
        elif self.step_s is not None:
            self.token_s = _average(self.token_s, max(seconds - self.step_s, 1e-6) / prompt_tokens)


def _average(old: float | None, new: float) -> float:
    return new if old is None else (1 - EMA) * old + EMA * new
