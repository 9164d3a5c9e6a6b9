"""How many waiting prompts one prefill round of the batch takes (reads mlx-lm 0.32.2's queue).

mlx-lm prefills at most eight prompts a round, with a decoding step between rounds, so prompts
arriving together get their first tokens spread over the rounds. A round here takes more while
their padded length stays within one prefill chunk (`prefill_step_size`), which is what a single
long prompt's round computes anyway; never fewer than eight. Measured: docs/BENCHMARKS.md,
"GPU: session 12".
"""

from __future__ import annotations

FLOOR = 8  # mlx-lm's default prefill_batch_size


def _chunk(segments: list[list[int]], step: int) -> int:
    """Tokens the next round prefills for a sequence: none when only its last token is left
    (that one goes straight to decoding)."""
    if not segments or (len(segments) == 1 and len(segments[0]) <= 1):
        return 0
    return min(len(segments[0]), step)


def prefill_width(batch) -> int:
    """The prompts the next round may hold, those already in it included."""
    budget = batch.prefill_step_size
    width = len(batch._prompt_batch)
    longest = max((_chunk(seq[0], budget) for seq in batch._currently_processing), default=0)
    for waiting in batch._unprocessed_sequences:
        if width >= batch.completion_batch_size:  # the batch could not take more anyway
            break
        chunk = _chunk(waiting[1], budget)
        if (width + 1) * max(longest, chunk) > budget:
            break
        width += 1
        longest = max(longest, chunk)
    return max(FLOOR, width)


def widen(batch) -> None:
    """Before each `batch.next()`: set how many prompts its round may take."""
    batch.prefill_batch_size = prefill_width(batch)
