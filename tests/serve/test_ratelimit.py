import pytest

from openlpu.errors import UserError
from openlpu.serve.errors import ApiError
from openlpu.serve.ratelimit import RateLimiter, format_reset


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_headers_count_down_and_reset_when_the_window_empties():
    clock = Clock()
    limiter = RateLimiter(3, 1000, clock=clock)
    h = limiter.admit(100)
    assert h["x-ratelimit-limit-requests"] == "3" and h["x-ratelimit-limit-tokens"] == "1000"
    assert h["x-ratelimit-remaining-requests"] == "2" and h["x-ratelimit-remaining-tokens"] == "900"
    assert h["x-ratelimit-reset-requests"] == "1m0.00s"
    clock.now += 15.5
    limiter.charge(50)  # the completion of the first request
    h = limiter.admit(10)
    assert h["x-ratelimit-remaining-requests"] == "1" and h["x-ratelimit-remaining-tokens"] == "840"
    assert h["x-ratelimit-reset-tokens"] == "1m0.00s"
    clock.now += 60.0  # both left the window
    assert limiter.headers()["x-ratelimit-remaining-requests"] == "3"
    assert limiter.headers()["x-ratelimit-reset-requests"] == "0.00s"


def test_the_fourth_request_in_a_minute_waits_for_the_first_to_leave():
    clock = Clock()
    limiter = RateLimiter(3, 10_000, clock=clock)
    for step in (0.0, 10.0, 10.0):
        clock.now += step
        limiter.admit(1)
    clock.now += 5.0  # 25 s after the first
    with pytest.raises(ApiError) as err:
        limiter.admit(1)
    e = err.value
    assert (e.status, e.type, e.code) == (429, "requests", "rate_limit_exceeded")
    assert e.headers["retry-after"] == "35" and e.headers["x-ratelimit-remaining-requests"] == "0"
    clock.now += 35.0
    assert limiter.admit(1)["x-ratelimit-remaining-requests"] == "0"


def test_tokens_wait_until_enough_have_left_the_window():
    clock = Clock()
    limiter = RateLimiter(100, 1000, clock=clock)
    limiter.admit(600)
    clock.now += 20.0
    limiter.admit(300)
    with pytest.raises(ApiError) as err:
        limiter.admit(200)  # needs the 600 of 20 s ago to leave: 40 s from now
    assert err.value.type == "tokens" and err.value.headers["retry-after"] == "40"
    with pytest.raises(ApiError) as err:
        limiter.admit(1001)  # never fits
    assert err.value.status == 413


def test_reset_times_are_written_like_groqs():
    assert format_reset(7.66) == "7.66s"
    assert format_reset(179.56) == "2m59.56s"
    assert format_reset(59.999) == "1m0.00s"


def test_limits_below_one_are_refused():
    with pytest.raises(UserError, match="at least 1"):
        RateLimiter(0, 10)
