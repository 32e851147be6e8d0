"""Text mode: commands answer and are recorded as ``command_used`` events."""

import json

import pytest

from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import wait_for_rows


@pytest.mark.slow
async def test_command_is_recorded(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    await bot_process_factory(
        DATABASE_URL=database_url, RATE_LIMIT_SECONDS="0", ANALYTICS_FLUSH_SECONDS="0.1"
    )
    fake_api.push_message("/echo hello there", user_id=61)
    reply = await fake_api.wait_for_call("sendMessage", chat_id=61)
    assert reply.params["text"] == "hello there"
    rows = await wait_for_rows(
        database_url,
        "SELECT event_data FROM shared.analytics_events"
        " WHERE telegram_id = 61 AND event_type = 'command_used'",
    )
    assert json.loads(rows[0]["event_data"]) == {"command": "echo", "args": "hello there"}
