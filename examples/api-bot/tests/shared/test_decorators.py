import pytest

from ecosystem_shared.decorators import retry


async def test_retry_succeeds_after_failures() -> None:
    calls = []

    @retry(max_attempts=3, delay=0.01)
    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    assert await flaky() == "ok"
    assert len(calls) == 3


async def test_retry_gives_up_and_reraises() -> None:
    calls = []

    @retry(max_attempts=2, delay=0.01)
    async def broken() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await broken()
    assert len(calls) == 2


async def test_retry_ignores_other_exceptions() -> None:
    calls = []

    @retry(max_attempts=5, delay=0.01, exceptions=(ConnectionError,))
    async def wrong() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        await wrong()
    assert len(calls) == 1
