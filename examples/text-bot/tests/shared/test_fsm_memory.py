"""The FSM storage a bot without Redis runs on: memory that follows the users in a conversation;
and the per-user locks a bot falls back to while Redis is away, which follow the users waiting.

aiogram's MemoryStorage makes a record for every user whose state is read, and its FSM
middleware reads the state of every update's user: a million users, a million records.
aiogram's SimpleEventIsolation likewise keeps a lock for every user it ever locked.
"""

from __future__ import annotations

import asyncio

import pytest
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey

from ecosystem_shared.fsm_memory import CompactEventIsolation, CompactMemoryStorage
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.in_process import StartInProcess


class Form(StatesGroup):
    name = State()


def key(user: int) -> StorageKey:
    return StorageKey(bot_id=42, chat_id=user, user_id=user)


async def test_reads_make_no_record_and_emptied_records_go() -> None:
    storage = CompactMemoryStorage()
    for user in range(1_000):
        assert await storage.get_state(key(user)) is None
        assert await storage.get_data(key(user)) == {}
        assert await storage.get_value(key(user), "name", "nobody") == "nobody"
        await storage.set_state(key(user), None)
    assert len(storage.storage) == 0

    await storage.set_state(key(1), Form.name)
    await storage.update_data(key(1), {"name": "Ann"})
    await storage.set_data(key(2), {"draft": [1, 2]})
    assert len(storage.storage) == 2
    assert await storage.get_state(key(1)) == Form.name.state
    assert await storage.get_value(key(1), "name") == "Ann"
    assert await storage.get_data(key(2)) == {"draft": [1, 2]}

    await storage.set_state(key(1), None)  # state cleared, data kept: the record stays
    assert await storage.get_data(key(1)) == {"name": "Ann"}
    await storage.set_data(key(1), {})  # nothing left: the record goes
    await storage.set_data(key(2), {})
    assert len(storage.storage) == 0


async def test_data_is_copied_in_and_out() -> None:
    storage = CompactMemoryStorage()
    data = {"items": 1}
    await storage.set_data(key(7), data)
    data["items"] = 2
    (await storage.get_data(key(7)))["items"] = 3
    assert await storage.get_value(key(7), "items") == 1


@pytest.mark.parametrize("users", [300])
async def test_a_bot_keeps_no_record_of_users_it_only_answered(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI, users: int
) -> None:
    h = await in_process_bot()
    assert isinstance(h.dp.storage, CompactMemoryStorage)
    for user in range(1, users + 1):
        await h.feed(fake_api.push_message("/start", user_id=5_000 + user))
    assert len(fake_api.calls("sendMessage")) >= users  # each was answered
    assert len(h.dp.storage.storage) == 0, "a record per user who only said /start"


async def test_locks_serialise_one_user_and_go_with_the_last_update() -> None:
    isolation = CompactEventIsolation()
    order: list[str] = []

    async def update(user: int, name: str, hold: float) -> None:
        async with isolation.lock(key(user)):
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    # Two updates of user 1 run one after the other; user 2's runs meanwhile.
    first = asyncio.create_task(update(1, "a", 0.05))
    await asyncio.sleep(0)
    second = asyncio.create_task(update(1, "b", 0))
    other = asyncio.create_task(update(2, "c", 0))
    await asyncio.sleep(0.01)
    assert len(isolation) == 1  # user 1: held, one update waiting; user 2 done, its lock gone
    await asyncio.gather(first, second, other)
    assert order.index("a out") < order.index("b in")
    assert order.index("c out") < order.index("a out")
    assert len(isolation) == 0

    # A thousand users later, nothing is kept.
    await asyncio.gather(*(update(user, str(user), 0) for user in range(1_000)))
    assert len(isolation) == 0


async def test_a_waiter_cancelled_or_failing_leaves_no_lock_behind() -> None:
    isolation = CompactEventIsolation()
    holder_in, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with isolation.lock(key(1)):
            holder_in.set()
            await release.wait()

    async def wait_then_fail() -> None:
        async with isolation.lock(key(1)):
            raise RuntimeError("handler failed")

    holder = asyncio.create_task(hold())
    await holder_in.wait()
    waiter = asyncio.create_task(wait_then_fail())
    cancelled = asyncio.create_task(wait_then_fail())
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await holder
    with pytest.raises(RuntimeError, match="handler failed"):
        await waiter
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert len(isolation) == 0
    async with isolation.lock(key(1)):  # and the user can be locked again
        assert len(isolation) == 1
