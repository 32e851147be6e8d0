"""The one backoff of the shared code (aiogram's), and the ``retry`` decorator's waits."""

import asyncio
import statistics

import pytest

from ecosystem_shared.backoff import retry_backoff
from ecosystem_shared.decorators import retry


def test_waits_double_up_to_the_cap() -> None:
    waits = retry_backoff(0.5, 10.0)
    assert [next(waits) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [next(retry_backoff(1.0, 100.0, factor=3.0)) for _ in range(2)] == [1.0, 1.0]
    tripled = retry_backoff(1.0, 100.0, factor=3.0)
    assert [next(tripled) for _ in range(3)] == [1.0, 3.0, 9.0]


def test_jitter_spreads_the_waits_after_the_first() -> None:
    backoffs = [retry_backoff(1.0, 10.0, jitter=0.1) for _ in range(400)]
    seconds = [(next(waits), next(waits)) for waits in backoffs]
    assert {first for first, _ in seconds} == {1.0}
    second = [later for _, later in seconds]
    assert len(set(second)) > 300
    assert statistics.mean(second) == pytest.approx(2.0, abs=0.05)
    assert statistics.stdev(second) == pytest.approx(0.1, rel=0.3)


@pytest.mark.parametrize(("first", "most", "factor"), [(1.0, 1.0, 2.0), (1.0, 5.0, 1.0)])
def test_bad_numbers_are_refused(first: float, most: float, factor: float) -> None:
    with pytest.raises(ValueError, match="should be greater than"):
        retry_backoff(first, most, factor=factor)
    with pytest.raises(ValueError, match="should be greater than"):
        retry(delay=first, backoff=factor, max_delay=most)


async def test_retry_sleeps_the_backoff_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # the decorator's; nothing else sleeps here

    @retry(max_attempts=5, delay=0.5, backoff=3.0, max_delay=2.0)
    async def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await down()
    assert slept == [0.5, 1.5, 2.0, 2.0]
    slept.clear()
    with pytest.raises(ConnectionError):
        await down()  # each call starts from the first wait again
    assert slept == [0.5, 1.5, 2.0, 2.0]
