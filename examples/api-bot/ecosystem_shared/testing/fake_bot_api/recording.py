"""What the bot sent: uploaded files, answered calls, and waiting for calls to arrive."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ecosystem_shared.testing.fake_bot_api.fields import Params


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot sent: a multipart part, or (Local Bot API) a path read from disk."""

    name: str
    filename: str | None
    data: bytes
    content_type: str | None = None
    path: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


Files = dict[str, UploadedFile]


@dataclass
class Call:
    """One request, recorded once answered: decoded ``params`` (JSON fields parsed, ids as int),
    uploads in ``files``, arrival ``time`` (monotonic), and the answer (result or error_code)."""

    method: str
    params: Params
    files: Files
    time: float
    error_code: int | None = None  # set when the fake answered with an error
    result: Any = None

    def file(self, ref: str | Mapping[str, Any]) -> UploadedFile:
        """The upload behind a field name, an ``attach://``/path reference or an album item."""
        key = ref["media"] if isinstance(ref, Mapping) else ref
        if isinstance(self.params.get(key), str):
            key = self.params[key]
        key = key.removeprefix("attach://")
        if key not in self.files:
            raise KeyError(f"{self.method}: no uploaded file {ref!r}; files: {list(self.files)}")
        return self.files[key]

    def matches(self, method: str | None, match: Mapping[str, Any]) -> bool:
        if method is not None and self.method.lower() != method.lower():
            return False
        return all(_loose_equal(self.params.get(key), want) for key, want in match.items())


def _loose_equal(value: Any, want: Any) -> bool:
    """``chat_id=42`` matches "42" as well; a callable is a predicate."""
    if callable(want):
        return bool(want(value))
    return bool(value == want or (value is not None and str(value) == str(want)))


class CallLog:
    """The calls of a :class:`FakeBotAPI`, and waiting for them (part of the server)."""

    poll_count: int  # getUpdates requests received
    _calls: list[Call]
    _changed: asyncio.Event  # set whenever a call is recorded

    def calls(self, method: str | None = None, **match: Any) -> list[Call]:
        return [call for call in self._calls if call.matches(method, match)]

    def clear_calls(self) -> None:
        self._calls.clear()

    async def wait_for_calls(
        self, method: str, count: int, timeout: float = 10.0, **match: Any
    ) -> list[Call]:
        """All matching calls, once there are at least ``count`` of them."""
        try:
            await self._wait(lambda: len(self.calls(method, **match)) >= count, timeout)
        except TimeoutError:
            seen = [(c.method, c.params) for c in self._calls if c.method != "getUpdates"]
            raise AssertionError(
                f"timed out after {timeout} s waiting for {count} x {method} {match};"
                f" last calls: {seen[-10:]}"
            ) from None
        return self.calls(method, **match)

    async def wait_for_call(self, method: str, timeout: float = 10.0, **match: Any) -> Call:
        return (await self.wait_for_calls(method, 1, timeout, **match))[0]

    async def wait_for_polling(self, timeout: float = 10.0, *, since: int = 0) -> None:
        """Return once more than ``since`` getUpdates requests have arrived (see poll_count)."""
        try:
            await self._wait(lambda: self.poll_count > since, timeout)
        except TimeoutError:
            raise AssertionError(f"no getUpdates request within {timeout} s") from None

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
