"""Requests and tokens per minute over a sliding window, with Groq's `x-ratelimit-*` headers.

A request is admitted if one more request and its prompt tokens fit the last minute's budgets; its
completion tokens are charged when it ends. Headers (on every chat completion answer):
x-ratelimit-{limit,remaining,reset}-{requests,tokens}; reset is the time until the window is empty
again, written like Groq's ("7.66s", "2m59.56s"). A refused request gets 429 and `retry-after`
(whole seconds until it would fit); a prompt larger than the whole token budget gets 413.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from openlpu.errors import UserError
from openlpu.serve.errors import ApiError

WINDOW_S = 60.0


def format_reset(seconds: float) -> str:
    minutes, rest = divmod(round(max(seconds, 0.0), 2), 60.0)  # round first: 59.999 s is "1m0.00s"
    return f"{int(minutes)}m{rest:.2f}s" if minutes else f"{rest:.2f}s"


class RateLimiter:
    def __init__(self, requests_per_minute: int, tokens_per_minute: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if requests_per_minute < 1 or tokens_per_minute < 1:
            raise UserError(f"rate limits of {requests_per_minute} requests and {tokens_per_minute} tokens per "
                            "minute must both be at least 1")
        self.requests_per_minute, self.tokens_per_minute, self.clock = requests_per_minute, tokens_per_minute, clock
        self._requests: deque[float] = deque()  # admission times
        self._tokens: deque[tuple[float, int]] = deque()  # (time, tokens)

    def admit(self, prompt_tokens: int) -> dict[str, str]:
        """Charge one request and its prompt tokens, or raise ApiError 429/413; returns the headers."""
        now = self._expire()
        if prompt_tokens > self.tokens_per_minute:
            raise ApiError(413, f"the prompt has {prompt_tokens} tokens, more than the limit of "
                                f"{self.tokens_per_minute} tokens per minute; send a shorter prompt",
                           type="tokens", code="rate_limit_exceeded", headers=self.headers())
        if len(self._requests) >= self.requests_per_minute:
            wait = self._requests[0] + WINDOW_S - now
            raise self._refusal(f"requests per minute: limit {self.requests_per_minute}", "requests", wait)
        if self._used_tokens() + prompt_tokens > self.tokens_per_minute:
            raise self._refusal(f"tokens per minute: limit {self.tokens_per_minute}, used {self._used_tokens()}, "
                                f"requested {prompt_tokens}", "tokens", self._wait_for_tokens(prompt_tokens, now))
        self._requests.append(now)
        self._tokens.append((now, prompt_tokens))
        return self.headers()

    def charge(self, tokens: int) -> None:
        """Completion tokens, charged when the request ends."""
        self._tokens.append((self.clock(), tokens))

    def headers(self) -> dict[str, str]:
        now = self._expire()
        last_request = self._requests[-1] + WINDOW_S - now if self._requests else 0.0
        last_tokens = self._tokens[-1][0] + WINDOW_S - now if self._tokens else 0.0
        return {
            "x-ratelimit-limit-requests": str(self.requests_per_minute),
            "x-ratelimit-limit-tokens": str(self.tokens_per_minute),
            "x-ratelimit-remaining-requests": str(max(self.requests_per_minute - len(self._requests), 0)),
            "x-ratelimit-remaining-tokens": str(max(self.tokens_per_minute - self._used_tokens(), 0)),
            "x-ratelimit-reset-requests": format_reset(last_request),
            "x-ratelimit-reset-tokens": format_reset(last_tokens),
        }

    def _refusal(self, what: str, kind: str, wait: float) -> ApiError:
        headers = self.headers() | {"retry-after": str(max(1, math.ceil(wait)))}
        return ApiError(429, f"Rate limit reached on {what}; please try again in {wait:.2f}s", type=kind,
                        code="rate_limit_exceeded", headers=headers)

    def _wait_for_tokens(self, wanted: int, now: float) -> float:
        """Seconds until enough charged tokens leave the window for `wanted` more to fit."""
        excess = self._used_tokens() + wanted - self.tokens_per_minute
        for t, n in self._tokens:
            excess -= n
            if excess <= 0:
                return t + WINDOW_S - now
        return WINDOW_S

    def _used_tokens(self) -> int:
        return sum(n for _, n in self._tokens)

    def _expire(self) -> float:
        now = self.clock()
        while self._requests and self._requests[0] <= now - WINDOW_S:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= now - WINDOW_S:
            self._tokens.popleft()
        return now
