"""FSM storage in memory that holds only the users who are in a conversation.

aiogram's ``MemoryStorage`` keeps a record for every user it was ever asked about: its FSM
middleware reads the state of each update's user, and the storage's ``defaultdict`` makes an
empty record on a read. A bot that has seen a million users keeps a million empty records. Here
a read never makes a record, and a record that becomes empty (no state, no data) is removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import copy
from typing import Any, overload

from aiogram.fsm.storage.base import StateType, StorageKey
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
