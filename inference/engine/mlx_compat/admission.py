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


def widen(batch) -> None:
    """Before each `batch.next()`: set how many prompts its round may take."""
    batch.prefill_batch_size = prefill_width(batch)


DEFAULT_CHUNK = 2048  # mlx-lm's; a smaller one is not yet measured to pay (#25)


def prefill_chunk() -> int:
    """Prompt tokens a long prompt advances by between two decoding steps of the batch
    (LMX_PREFILL_CHUNK): smaller bounds how long the streams decoding wait, at the cost of the
    long prompt's own time to first token."""
    from inference import conf

    chosen = str(conf.get("LMX_PREFILL_CHUNK")).lower()
    return DEFAULT_CHUNK if chosen == "auto" else int(chosen)
