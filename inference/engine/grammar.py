"""Constrained decoding with llguidance: a request's grammar becomes a logits processor that masks
every token the grammar does not allow next, on that request's row of the batch only.

mlx-lm calls a request's logits processors once per step, with the tokens so far and that row's
logits: the first call (after the prompt) has nothing to consume; each later call first feeds the
matcher the token sampled at the step before. Once the grammar is complete only end-of-sequence
tokens are allowed, so the request ends there.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from llguidance import LLExecutor, LLMatcher, LLTokenizer, TokenizerWrapper
from llguidance.numpy import fill_next_token_bitmask_par

from inference.errors import InvalidRequest


def tokenizer_for(tokenizer, vocab_size: int) -> LLTokenizer:
    """llguidance's view of a model's tokenizer (costs ~1 s: cache it per load). `vocab_size` is
    the model's logits width, which may exceed the tokenizer's. llguidance reads a Hugging Face
    fast tokenizer's JSON when it knows its decoder; any other tokenizer it is given token by
    token, as the bytes each token decodes to."""
    eos = sorted(tokenizer.eos_token_ids)
    backend = getattr(tokenizer, "backend_tokenizer", None)  # mlx-lm's wrapper passes it through
    if backend is not None:
        try:
            return LLTokenizer(backend.to_str(), n_vocab=vocab_size, eos_token=eos)
        except ValueError:
            pass  # e.g. "can't determine decoder type" (a WordPiece decoder)
    return LLTokenizer(TokenizerWrapper(_TokenBytes(tokenizer, eos)), n_vocab=vocab_size, eos_token=eos)


class _TokenBytes:
    """What llguidance's TokenizerWrapper asks of a tokenizer it cannot read from JSON."""

    def __init__(self, tokenizer, eos: list[int]):
        self._encode = tokenizer.encode
        size = len(tokenizer.get_vocab()) if hasattr(tokenizer, "get_vocab") else tokenizer.vocab_size
        self.tokens = [tokenizer.decode([i]).encode() for i in range(size)]
        self.eos_token_id = eos[0] if eos else None
        self.bos_token_id = getattr(tokenizer, "bos_token_id", None)
        self.special_token_ids = sorted(set(getattr(tokenizer, "all_special_ids", [])) | set(eos))

    def __call__(self, text: str) -> list[int]:
        if not isinstance(text, str):  # llguidance probes for bytes; a str is what encode reads
            raise TypeError("text only")
        return self._encode(text, add_special_tokens=False)


class GrammarProcessor:
    def __init__(self, tokenizer: LLTokenizer, grammar: str):
        self.matcher = LLMatcher(tokenizer, grammar)
        if self.matcher.is_error():
            raise InvalidRequest(f"The grammar cannot be used: {self.matcher.get_error()}")
        self.eos_tokens = list(tokenizer.eos_tokens)
        self.width = -(-tokenizer.vocab_size // 32)  # int32 words in this grammar's masks
        self._calls = 0
        self._pending: int | None = None
        self.sent = DeviceWords()  # this request's mask on the device, when decoded alone

    def advance(self, token: int) -> None:
        """The token sampled at the step before, read on the host by the caller: read here from
        `tokens` (a new array, queued behind this step's forward pass) it would wait for that
        pass, and the device would idle while the host builds the next step."""
        self._pending = token

    def consume(self, token: int | None) -> None:
        """Feed the matcher `token` (the one sampled at the step before; not read on the first
        call, after the prompt)."""
        if self.step():
            self.matcher.consume_token(token)

    def step(self) -> bool:
        """Count a call; whether it has a token to feed first (not the first, after the prompt)."""
        self._pending = None
        self._calls += 1
        return self._calls > 1

    def rescue(self, words: np.ndarray) -> None:
        """A mask allowing nothing means the matcher failed: allow end-of-sequence instead, so the
        answer ends rather than samples from nothing."""
        if not words.any():
            bits = words.view(np.uint32)
            for eos in self.eos_tokens:
                bits[eos // 32] |= np.uint32(1 << (eos % 32))

    def next_mask(self, token: int | None) -> np.ndarray:
        """The allowed tokens after `token` as llguidance's bitmask: int32 words, bit i of word w =
        token 32w+i."""
        self.consume(token)
        words = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.int32).copy()
        self.rescue(words)
        return words

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        mx.async_eval(logits)  # the forward pass runs while the mask is computed on the host
        token = None
        if self._calls:
            token = self._pending if self._pending is not None else int(tokens[-1].item())
        words = self.next_mask(token)
        return _apply(logits, words[None, :], self.sent)


class DeviceWords:
    """The mask last sent to the device, kept there. A grammar's mask often repeats from one
    step to the next (inside a JSON string every step allows the same tokens), and on MLX's
    CUDA build sending a fresh one costs more than all the grammar's host work (#21,
    docs/BENCHMARKS.md): a mask is sent only when it differs."""

    def __init__(self):
        self.host: np.ndarray | None = None
        self.device: mx.array | None = None

    def send(self, words: np.ndarray) -> mx.array:
        if self.host is None or not np.array_equal(self.host, words):  # unequal shapes too
            # all of it: sending only the changed rows would be a scatter of a new shape for
            # each count of rows, each compiled on first use on CUDA (a stall of the batch)
            self.host, self.device = words.copy(), mx.array(words)
        return self.device


def _apply(logits: mx.array, words: np.ndarray, sent: DeviceWords | None = None) -> mx.array:
    """`logits` (rows, vocab) with every token whose bit is clear in `words` (rows, w) at -inf;
    tokens past the words' end are cleared too. One transfer (none when `sent` holds these
    words already) and one `where` for all rows."""
    width = -(-logits.shape[1] // 32)
    if words.shape[1] < width:
        words = np.pad(words, ((0, 0), (0, width - words.shape[1])))
    words = np.ascontiguousarray(words[:, :width])
    return masked(logits, sent.send(words) if sent is not None else mx.array(words))


def masked(logits: mx.array, words: mx.array) -> mx.array:
    """`_apply` with the words already on the device, exactly as wide as the logits need."""
    rows, vocab = logits.shape
    bits = (words[:, :, None] >> mx.arange(32, dtype=mx.int32)) & 1
    allowed = bits.reshape(rows, words.shape[1] * 32)[:, :vocab].astype(mx.bool_)
    return mx.where(allowed, logits, mx.array(-float("inf"), dtype=logits.dtype))


_executor: LLExecutor | None = None


def mask_rows(
    logits: mx.array,
    rows: list[tuple[int, GrammarProcessor]],
    last: list[int],
    sent: DeviceWords | None = None,
) -> mx.array:
    """The batch step's grammars in one go: every constrained row's matcher fed the token it
    sampled at the step before (`last`, read on the host) and all their masks computed, each in
    one call to llguidance's thread pool (without the GIL), the masks written straight into one
    bitmask for the whole batch (other rows allow every token), applied with one `where`: at 32
    rows, per-row calls, slices and copies cost more than the forward pass leaves the host."""
    global _executor
    if _executor is None:
        _executor = LLExecutor()
    batch, vocab = logits.shape
    width = -(-vocab // 32)
    fed = [(processor.matcher, last[row]) for row, processor in rows if processor.step()]
    if fed:
        _executor.consume_token_par(fed)
    own = rows[0][1].width  # one model, one tokenizer: every grammar's mask is this wide
    words = np.full((batch, max(width, own)), -1, dtype=np.int32)
    if own == words.shape[1]:
        fill_next_token_bitmask_par(_executor, [(p.matcher, row) for row, p in rows], words)
    else:  # logits wider than the tokenizer: the tokens past its end are never allowed
        masks = np.zeros((len(rows), own), dtype=np.int32)
        fill_next_token_bitmask_par(_executor, [(p.matcher, i) for i, (_, p) in enumerate(rows)], masks)
        for (row, _), mask in zip(rows, masks, strict=True):
            words[row] = 0
            words[row, :own] = mask
    by_row = dict(rows)
    constrained = np.array(list(by_row))
    for row in constrained[~words[constrained].any(axis=1)]:
        by_row[int(row)].rescue(words[row])
    return _apply(logits, words, sent)


def advance(processors, token: int) -> None:
    """Give each processor that reads the last token (a grammar) that token, read on the host."""
    for processor in processors or ():
        if isinstance(processor, GrammarProcessor):
            processor.advance(token)
