"""Choosing the next token, and when to stop: the sampling parameters of the Chat Completions API.

The chip chooses the tokens (models/sampling_graph.py): temperature 0 is greedy (the most likely token, first
on ties); otherwise the step program draws from softmax(logits / temperature) by the Gumbel-max trick, with
noise the host draws from a numpy generator seeded by `seed` (one row per token), so the same seed gives the
same completion on every executor. With top_p below 1 only the nucleus may be drawn: the most likely tokens
whose probabilities first reach `top_p` together (the chip also keeps any token less than 2^-14 below the
last of them in logits / temperature: its threshold moves on that grid). Generation ends at a stop token of
the model, at the first of up to four stop strings to appear in full (the answer ends before it), or after
`max_tokens` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from openlpu.errors import UserError

MAX_STOP_SEQUENCES = 4  # as the OpenAI and Groq APIs allow
MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class SamplingParams:
    """What a request asks of the sampler; checked when built, so a bad value never reaches the engine."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    max_tokens: int | None = None  # None: until a stop or the end of the context
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        t, p = self.temperature, self.top_p
        if not isinstance(t, int | float) or not 0.0 <= t <= MAX_TEMPERATURE:
            raise UserError(f"temperature {t!r} is out of range; use a number from 0 (greedy) to {MAX_TEMPERATURE:g}")
        if not isinstance(p, int | float) or not 0.0 < p <= 1.0:
            raise UserError(f"top_p {p!r} is out of range; use a number above 0 and at most 1")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise UserError(f"seed {self.seed!r} is not an integer; give an integer or leave it out")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise UserError(f"max_tokens {self.max_tokens!r} must be a positive integer; ask for at least 1 token")
        if len(self.stop) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) and s for s in self.stop):
            raise UserError(f"stop {list(self.stop)!r} is invalid; give at most {MAX_STOP_SEQUENCES} non-empty strings")


class StopMatcher:
    """Cuts streamed text at the first stop string, never letting part of a stop string out early.

    `feed` returns the text that is safe to emit and whether a stop string was found; text that could be
    the start of a stop string is held back until the next piece decides, or until `flush` at the end.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        buf = self._held + text
        # The stop string that is complete first wins (then the one starting first), however text is cut.
        hits = [(i + len(s), i) for s, i in ((s, buf.find(s)) for s in self.stops) if i >= 0]
        if hits:
            self._held = ""
            return buf[: min(hits)[1]], True
        keep = self._longest_stop_prefix_suffix(buf)
        self._held = buf[len(buf) - keep:]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _longest_stop_prefix_suffix(self, buf: str) -> int:
        """Length of the longest end of `buf` that some stop string starts with."""
        for n in range(min(len(buf), max((len(s) for s in self.stops), default=0)), 0, -1):
            if any(s.startswith(buf[-n:]) for s in self.stops):
                return n
        return 0
