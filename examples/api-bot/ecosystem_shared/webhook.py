"""Webhook mode (``RUN_MODE=webhook``): an aiohttp server Telegram posts updates to.

Any number of instances may run behind a reverse proxy, all serving ``WEBHOOK_PATH``:

- aiogram's ``SimpleRequestHandler`` checks ``X-Telegram-Bot-Api-Secret-Token`` against
  ``WEBHOOK_SECRET`` (constant-time) and answers 401 before reading the body: a forged request
  is neither processed nor stored. Updates are handled before the 200 goes back
  (``handle_in_background=False``), so an instance killed mid-update leaves the update to
  Telegram's retry, which the proxy sends to another instance (aiogram answers early, and
  finishes in the background, once a handler runs past 55 s);
- at start each instance asks ``getWebhookInfo`` and calls ``setWebhook`` only when the URL,
  ``allowed_updates`` or ``max_connections`` differ, so instances restarting one after another
  do not fight. The secret itself is not readable back from Telegram: the URL carries a
  fingerprint of it (``?s=<16 hex digits of SHA-256>``), so a new secret changes the URL and is
  set by the first instance that has it;
- shutdown never deletes the webhook (it is shared by every instance) unless
  ``WEBHOOK_DELETE_ON_SHUTDOWN=true``;
- ``GET /healthz`` answers 200 with a small JSON status for the proxy and Docker;
- ``GET /metrics`` serves the bot's Prometheus metrics when ``METRICS_PORT`` is set, on the
  metrics port too when it differs from the webhook's (``ecosystem_shared.metrics_server``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from ecosystem_shared.metrics_server import (
    HEALTH_PATH,
    add_health_route,
    add_metrics_route,
    listen_for_metrics,
)

if TYPE_CHECKING:
    from ecosystem_shared.config import SharedSettings
    from ecosystem_shared.metrics import BotMetrics

__all__ = ["HEALTH_PATH", "ensure_webhook", "serve_webhook", "webhook_url"]

logger = logging.getLogger(__name__)

# In-flight updates get this long to finish after SIGTERM (compose gives 30 s before SIGKILL).
SHUTDOWN_TIMEOUT_SECONDS = 20.0


def secret_fingerprint(secret: str) -> str:
    """16 hex digits of SHA-256: tells two secrets apart without revealing either."""
    return hashlib.sha256(f"telegram-webhook:{secret}".encode()).hexdigest()[:16]


def webhook_url(settings: SharedSettings) -> str:
    """The URL Telegram is told: ``WEBHOOK_BASE_URL`` + ``WEBHOOK_PATH`` + secret fingerprint."""
    base = settings.WEBHOOK_BASE_URL or ""
    return f"{base}{settings.WEBHOOK_PATH}?s={secret_fingerprint(settings.webhook_secret)}"


async def ensure_webhook(
    bot: Bot, settings: SharedSettings, allowed_updates: Sequence[str]
) -> bool:
    """``setWebhook`` unless Telegram already has these values; True when it was called."""
    url = webhook_url(settings)
    wanted = sorted(allowed_updates)
    info = await bot.get_webhook_info()
    current = sorted(info.allowed_updates) if info.allowed_updates is not None else None
    if (
        info.url == url
        and current == wanted
        and info.max_connections == settings.WEBHOOK_MAX_CONNECTIONS
    ):
        logger.info("Webhook already set to %s; not set again", _public(url))
        return False
    await bot.set_webhook(
        url,
        secret_token=settings.webhook_secret,
        allowed_updates=wanted,
        max_connections=settings.WEBHOOK_MAX_CONNECTIONS,
        drop_pending_updates=False,
    )
    logger.info("Webhook set to %s for %s", _public(url), ", ".join(wanted) or "all updates")
    return True


def _public(url: str) -> str:
    return url.partition("?")[0]


@web.middleware
async def acknowledge_failures(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """An update whose handling raised is answered 200, as polling drops it after logging:
    a 5xx would make Telegram send it again and again (and the side effects with it)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        logger.exception("Update failed; acknowledged so that Telegram does not send it again")
        return web.json_response({})


def build_app(
    bot: Bot,
    dp: Dispatcher,
    settings: SharedSettings,
    status: Callable[[], dict[str, Any]],
    metrics: BotMetrics | None = None,
) -> web.Application:
    app = web.Application(middlewares=[acknowledge_failures])
    SimpleRequestHandler(
        dp, bot, handle_in_background=False, secret_token=settings.webhook_secret
    ).register(app, path=settings.WEBHOOK_PATH)
    add_health_route(app, settings.BOT_NAME, status)
    if metrics is not None:
        add_metrics_route(app, metrics)
    setup_application(app, dp, bot=bot)
    return app


async def serve_webhook(
    bot: Bot,
    dp: Dispatcher,
    settings: SharedSettings,
    status: Callable[[], dict[str, Any]] = dict,
    metrics: BotMetrics | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; the webhook is set once the server listens."""
    app = build_app(bot, dp, settings, status, metrics)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        site = web.TCPSite(runner, settings.WEBHOOK_LISTEN_HOST, settings.WEBHOOK_LISTEN_PORT)
        await site.start()
        if metrics is not None and (settings.METRICS_HOST, settings.METRICS_PORT) != (
            settings.WEBHOOK_LISTEN_HOST,
            settings.WEBHOOK_LISTEN_PORT,
        ):
            await listen_for_metrics(runner, settings)
        logger.info(
            "Webhook server listening on %s:%d%s",
            settings.WEBHOOK_LISTEN_HOST,
            settings.WEBHOOK_LISTEN_PORT,
            settings.WEBHOOK_PATH,
        )
        await ensure_webhook(bot, settings, dp.resolve_used_update_types())
        await stop.wait()
        logger.info("Stopping: finishing the updates in progress")
        if settings.WEBHOOK_DELETE_ON_SHUTDOWN:
            await bot.delete_webhook(drop_pending_updates=False)
            logger.info("Webhook deleted (WEBHOOK_DELETE_ON_SHUTDOWN=true)")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
