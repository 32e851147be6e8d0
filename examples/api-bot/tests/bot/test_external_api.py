"""/getdata against a local stand-in of the external API: success, retries, failure."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import wait_for_rows


@pytest.fixture
async def external_api() -> AsyncIterator[dict[str, Any]]:
    state: dict[str, Any] = {"fail_first": 0, "hits": 0, "auth": None}

    async def data(request: web.Request) -> web.Response:
        state["hits"] += 1
        state["auth"] = request.headers.get("Authorization")
        if state["fail_first"] > 0:
            state["fail_first"] -= 1
            return web.Response(status=503)
        return web.json_response({"user": int(request.match_info["user_id"]), "balance": 42})

    app = web.Application()
    app.router.add_get("/data/{user_id}", data)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state["url"] = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.mark.slow
async def test_getdata_retries_then_answers(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    external_api: dict[str, Any],
) -> None:
    external_api["fail_first"] = 2
    bot = await bot_process_factory(
        DATABASE_URL=database_url,
        RATE_LIMIT_SECONDS="0",
        ANALYTICS_FLUSH_SECONDS="0.1",
        EXTERNAL_API_BASE_URL=external_api["url"],
        EXTERNAL_API_KEY="k-123",
    )
    fake_api.push_message("/getdata", user_id=81)
    reply = await fake_api.wait_for_call("sendMessage", chat_id=81, timeout=20)
    assert '"balance": 42' in reply.params["text"]
    assert external_api["hits"] == 3
    assert external_api["auth"] == "Bearer k-123"
    await wait_for_rows(
        database_url,
        "SELECT 1 FROM shared.analytics_events"
        " WHERE telegram_id = 81 AND event_type = 'api_request_success'",
    )
    # The client came from bot_services (run_bot's services=) and is closed at shutdown.
    assert await bot.stop() == 0
    assert "Closed the bot's services: external_api" in bot.output


@pytest.mark.slow
async def test_getdata_failure_is_recorded(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    external_api: dict[str, Any],
) -> None:
    external_api["fail_first"] = 100
    await bot_process_factory(
        DATABASE_URL=database_url,
        RATE_LIMIT_SECONDS="0",
        ANALYTICS_FLUSH_SECONDS="0.1",
        EXTERNAL_API_BASE_URL=external_api["url"],
    )
    fake_api.push_message("/getdata", user_id=82)
    await fake_api.wait_for_call("sendMessage", chat_id=82, timeout=20)
    await wait_for_rows(
        database_url,
        "SELECT 1 FROM shared.analytics_events WHERE telegram_id = 82 AND event_type = 'error'",
    )
