"""The fake Bot API as a Local Bot API server container, for the ecosystem's end-to-end tests.

Port 8081 answers ``/bot<token>/<method>`` and ``/file/bot<token>/<path>`` like the real server,
one :class:`FakeBotAPI` per token (created on first use, so every bot of the ecosystem has its
own updates and calls). Port 8082 is the statistics page the compose health check reads.
``/_control/<token>/...`` on 8081 lets the tests push updates and read what the bots sent:
the port is published on the host's loopback by the tests' compose override only.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web
from ecosystem_shared.testing import fake_webhook
from ecosystem_shared.testing.fake_bot_api import Call, FakeBotAPI

API_PORT = int(os.environ.get("FAKE_API_PORT", "8081"))
STAT_PORT = int(os.environ.get("FAKE_STAT_PORT", "8082"))
# Webhook URLs the fake accepts over plain http besides loopback ones: in the Swarm tests the
# reverse proxy is the `caddy` container on the overlay network, serving http on port 80.
fake_webhook.LOOPBACK = fake_webhook.LOOPBACK | frozenset(
    os.environ.get("FAKE_PLAIN_HTTP_HOSTS", "").split()
)

apis: dict[str, FakeBotAPI] = {}


def api_for(token: str) -> FakeBotAPI:
    if token not in apis:
        apis[token] = FakeBotAPI(token, local=True)
    return apis[token]


async def method(request: web.Request) -> web.StreamResponse:
    # The per-token fake answers exactly as its own server would (it checks the token itself).
    return await api_for(request.match_info["token"])._handle_method(request)


async def download(request: web.Request) -> web.StreamResponse:
    return await api_for(request.match_info["token"])._handle_download(request)


def describe(call: Call) -> dict[str, Any]:
    files = {
        name: {"size": f.size, "sha256": f.sha256, "path": f.path, "filename": f.filename}
        for name, f in call.files.items()
    }
    return {
        "method": call.method,
        "params": call.params,
        "files": files,
        "error_code": call.error_code,
    }


async def push_message(request: web.Request) -> web.Response:
    body = await request.json()
    api = api_for(request.match_info["token"])
    update = api.push_message(
        body["text"], int(body["user_id"]), first_name=body.get("first_name", "Test")
    )
    return web.json_response(update)


async def calls(request: web.Request) -> web.Response:
    api = api_for(request.match_info["token"])
    wanted = request.query.get("method")
    return web.json_response(
        {"polls": api.poll_count, "calls": [describe(c) for c in api.calls(wanted)]}
    )


async def stats(request: web.Request) -> web.Response:
    return web.Response(text=f"bots: {len(apis)}\n")


async def main() -> None:
    app = web.Application(client_max_size=2100 * 1024 * 1024)
    app.router.add_route("*", "/bot{token}/{method}", method)
    app.router.add_route("GET", "/file/bot{token}/{path:.+}", download)
    app.router.add_post("/_control/{token}/message", push_message)
    app.router.add_get("/_control/{token}/calls", calls)
    stat_app = web.Application()
    stat_app.router.add_get("/", stats)
    runners = [web.AppRunner(app, handler_cancellation=True), web.AppRunner(stat_app)]
    for runner, port in zip(runners, (API_PORT, STAT_PORT), strict=True):
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port).start()  # nosec B104: inside its container
    print(f"fake Bot API listening on :{API_PORT}, statistics on :{STAT_PORT}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
