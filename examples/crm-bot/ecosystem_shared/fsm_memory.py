"""FSM storage and per-user locks in memory that hold only the users who need them.

aiogram's ``MemoryStorage`` keeps a record for every user it was ever asked about: its FSM
middleware reads the state of each update's user, and the storage's ``defaultdict`` makes an
empty record on a read. A bot that has seen a million users keeps a million empty records. Here
a read never makes a record, and a record that becomes empty (no state, no data) is removed.
Likewise aiogram's ``SimpleEventIsolation`` keeps a lock for every user whose update it ever
serialised (its source says "Unused locks cleaner is needed"); ``CompactEventIsolation`` keeps
a user's lock only while an update of theirs holds it or waits for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from copy import copy
from typing import Any, overload

from aiogram.fsm.storage.base import BaseEventIsolation, StateType, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage


class CompactMemoryStorage(MemoryStorage):
    """``MemoryStorage`` whose size follows the users with a state or data, not every user."""

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        if state is None and key not in self.storage:
            return
        await super().set_state(key, state)
        self._forget_if_empty(key)

    async def get_state(self, key: StorageKey) -> str | None:
        record = self.storage.get(key)
        return None if record is None else record.state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await super().set_data(key, data)
        self._forget_if_empty(key)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        record = self.storage.get(key)
        return {} if record is None else record.data.copy()

    @overload
    async def get_value(self, storage_key: StorageKey, dict_key: str) -> Any | None: ...

    @overload
    async def get_value(self, storage_key: StorageKey, dict_key: str, default: Any) -> Any: ...

    async def get_value(
        self, storage_key: StorageKey, dict_key: str, default: Any | None = None
    ) -> Any | None:
        record = self.storage.get(storage_key)
        return default if record is None else copy(record.data.get(dict_key, default))

    def _forget_if_empty(self, key: StorageKey) -> None:
        record = self.storage.get(key)
        if record is not None and record.state is None and not record.data:
            del self.storage[key]


class _UserLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # updates holding or waiting for the lock


class CompactEventIsolation(BaseEventIsolation):
    """One update per user at a time in this process; the lock goes with the user's last update."""

    def __init__(self) -> None:
        self._locks: dict[StorageKey, _UserLock] = {}

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _UserLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:  # also when cancelled while waiting
            entry.users -= 1
            if entry.users == 0 and self._locks.get(key) is entry:
                del self._locks[key]

    def __len__(self) -> int:
        """Users with an update holding or waiting for their lock."""
        return len(self._locks)

    async def close(self) -> None:
        self._locks.clear()
