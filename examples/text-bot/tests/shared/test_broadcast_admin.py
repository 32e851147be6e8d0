"""The admin's /broadcast and /broadcasts in the bot as a process: preview with the audience size,
Confirm pressed twice starts one job, the progress message with Pause/Resume/Cancel; anyone else
gets the bot's answer to an unknown command and the attempt is logged."""

from __future__ import annotations

from typing import Any

import pytest

from ecosystem_shared.broadcast_texts import TEXTS
from ecosystem_shared.testing.fake_bot_api import Call, FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_until

from .test_broadcast_processes import FAST, FIRST_USER, broadcast_deliveries, seed_audience

pytestmark = pytest.mark.slow  # a bot process sending a broadcast

TIMEOUT = 60.0
ADMIN = 777
STRANGER = 778


def buttons(call: Call) -> dict[str, str]:
    """Button text -> callback data of a message's inline keyboard."""
    markup: dict[str, Any] = call.params.get("reply_markup") or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row}


async def job_states(url: str) -> list[str]:
    rows = await fetch(url, "SELECT state FROM shared.broadcasts ORDER BY id")
    return [row["state"] for row in rows]


async def test_admin_broadcast_flow_and_strangers(
    bot_process_factory: StartBot, fake_api: FakeBotAPI, database_url: str
) -> None:
    users = list(range(FIRST_USER, FIRST_USER + 150))
    await seed_audience(database_url, users)
    bot = await bot_process_factory(
        DATABASE_URL=database_url, ADMIN_USER_IDS=str(ADMIN), BROADCAST_RATE="20", **FAST
    )

    # A stranger: the bot's usual answer to an unknown command, logged, no job.
    fake_api.push_message("/no_such_command", user_id=STRANGER)
    usual = await fake_api.wait_for_call("sendMessage", TIMEOUT, chat_id=STRANGER)
    fake_api.push_message("/broadcast", user_id=STRANGER)
    await fake_api.wait_for_calls("sendMessage", 2, TIMEOUT, chat_id=STRANGER)
    answer = fake_api.calls("sendMessage", chat_id=STRANGER)[-1]
    assert answer.params["text"] == usual.params["text"]
    await bot.wait_for_output(r"Broadcast command /broadcast from 778, who is not in ADMIN_USER")
    assert await job_states(database_url) == []

    # The admin: a refused message first, then a good one and its preview.
    fake_api.push_message("/broadcast", user_id=ADMIN)
    await fake_api.wait_for_call("sendMessage", TIMEOUT, chat_id=ADMIN)
    fake_api.push_message("x" * 4097, user_id=ADMIN)
    refused = await fake_api.wait_for_calls("sendMessage", 2, TIMEOUT, chat_id=ADMIN)
    assert "4097" in refused[-1].params["text"]
    fake_api.push_message("Big news", user_id=ADMIN)
    await fake_api.wait_for_calls("sendMessage", 4, TIMEOUT, chat_id=ADMIN)
    sample, preview = fake_api.calls("sendMessage", chat_id=ADMIN)[-2:]
    assert sample.params["text"] == "Big news"
    assert "150" in preview.params["text"]
    confirm = next(data for data in buttons(preview).values() if data.startswith("bc:confirm"))
    assert await job_states(database_url) == ["draft"]

    # Confirm twice: one job.
    fake_api.push_callback_query(confirm, user_id=ADMIN)
    fake_api.push_callback_query(confirm, user_id=ADMIN)
    await fake_api.wait_for_calls("answerCallbackQuery", 2, TIMEOUT)
    edits = await fake_api.wait_for_calls("editMessageText", 1, TIMEOUT, chat_id=ADMIN)
    pause = next(d for d in buttons(edits[-1]).values() if d.startswith("bc:pause"))
    fake_api.push_callback_query(pause, user_id=ADMIN)

    async def paused() -> bool:
        return await job_states(database_url) == ["paused"]

    await wait_until(paused, timeout=TIMEOUT, what="paused")
    sent_while_paused = len(broadcast_deliveries(fake_api))
    assert sent_while_paused < len(users)

    def resume_buttons() -> list[str]:
        latest = fake_api.calls("editMessageText", chat_id=ADMIN)[-1]
        return [d for d in buttons(latest).values() if d.startswith("bc:resume")]

    async def offers_resume() -> bool:  # the job is paused before its message says so
        return bool(resume_buttons())

    await wait_until(offers_resume, timeout=TIMEOUT, what="a Resume button")
    resume = resume_buttons()[0]
    fake_api.push_callback_query(resume, user_id=ADMIN)

    async def done() -> bool:
        return await job_states(database_url) == ["done"]

    await wait_until(done, timeout=TIMEOUT, interval=0.2, what="done")
    delivered = broadcast_deliveries(fake_api)
    assert set(delivered) == set(users) and set(delivered.values()) == {1}
    answers = [c.params.get("text") for c in fake_api.calls("answerCallbackQuery")]
    already = {t.not_a_draft.format(state=t.states["running"]) for t in TEXTS.values()}
    assert already & set(answers), answers  # the second Confirm: told, nothing started

    # One edit per 5 s at most while it runs, plus one after each button and the last one.
    edit_times = [c.time for c in fake_api.calls("editMessageText", chat_id=ADMIN)]
    assert len(edit_times) <= (edit_times[-1] - edit_times[0]) / 5 + 5
    final = fake_api.calls("editMessageText", chat_id=ADMIN)[-1]
    assert "150" in final.params["text"] and not buttons(final)

    before = len(fake_api.calls("sendMessage", chat_id=ADMIN))
    fake_api.push_message("/broadcasts", user_id=ADMIN)
    listing = await fake_api.wait_for_calls("sendMessage", before + 1, TIMEOUT, chat_id=ADMIN)
    job_id = (await fetch(database_url, "SELECT id FROM shared.broadcasts"))[0]["id"]
    assert f"#{job_id}:" in listing[-1].params["text"]
