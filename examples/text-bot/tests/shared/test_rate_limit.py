import resource
import sys

import pytest

from ecosystem_shared.middlewares.rate_limit import RateLimiter, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_allowed_one_warning_then_silence_per_window() -> None:
    clock = Clock()
    limiter = RateLimiter(3.0, clock=clock)
    verdicts = [limiter.check(7) for _ in range(10)]
    assert verdicts[0] is Verdict.ALLOW
    assert verdicts[1] is Verdict.WARN
    assert set(verdicts[2:]) == {Verdict.DROP}
    clock.now += 3.0
    assert limiter.check(7) is Verdict.ALLOW
    assert limiter.check(7) is Verdict.WARN


def test_users_are_independent() -> None:
    limiter = RateLimiter(3.0, clock=Clock())
    assert limiter.check(1) is Verdict.ALLOW
    assert limiter.check(2) is Verdict.ALLOW
    assert limiter.check(1) is Verdict.WARN


def test_expired_windows_are_pruned() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock)
    for user in range(1000):
        limiter.check(user)
    assert len(limiter) == 1000
    clock.now += 1.5
    limiter.check(5000)
    assert len(limiter) == 1


def test_memory_is_capped_however_many_users_come() -> None:
    limiter = RateLimiter(3600.0, max_keys=1_000, clock=Clock())
    for user in range(20_000):  # twenty times the cap (a million: the slow RSS test below)
        limiter.check(user)
    assert len(limiter) == 1_000
    # The newest users are the ones remembered.
    assert limiter.check(19_999) is Verdict.WARN


def test_retry_in_counts_down() -> None:
    clock = Clock()
    limiter = RateLimiter(3.0, clock=clock)
    limiter.check(1)
    clock.now += 1.0
    assert abs(limiter.retry_in(1) - 2.0) < 1e-9
    assert limiter.retry_in(999) == 0.0


@pytest.mark.slow
def test_rss_bounded_with_a_million_users() -> None:
    if sys.platform != "linux":
        return
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    limiter = RateLimiter(3600.0, max_keys=100_000, clock=Clock())
    for user in range(1_000_000):
        limiter.check(user)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert len(limiter) == 100_000
    assert grown_kib < 64 * 1024, f"rate limiter grew RSS by {grown_kib} KiB"
