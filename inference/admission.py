"""How many waiting prompts one prefill round of the batch takes.

mlx-lm's BatchGenerator prefills at most `prefill_batch_size` prompts (8) per round and runs a
decoding step of the batch between rounds, so 32 short prompts that arrive together take four
rounds, their first tokens spread over them, and the last to start finishes last. Random
Qwen3-30B-A3B on an H200, 32 streams of 32-token prompts x 128 tokens: first tokens 61-2,013 ms,
533-605 tok/s in all; in one round, 64-1,057 ms and 712-735 tok/s (docs/BENCHMARKS.md).

So a round takes more prompts while their padded length (a round pads every prompt to its
longest chunk) stays within one prefill chunk, `prefill_step_size` tokens: what a single long
prompt's round computes anyway, so a decoding stream waits no longer. Never fewer than mlx-lm's
eight. Reads mlx-lm 0.32.2's queue layout (requirements.txt pins it).
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
