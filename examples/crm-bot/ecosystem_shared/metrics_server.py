"""Where ``/metrics`` is served: ``METRICS_HOST:METRICS_PORT`` (``METRICS_PORT=0``: nowhere).

Polling mode: :func:`start_metrics_server` runs a small aiohttp server (aiogram brings aiohttp)
with ``/metrics`` and the same ``/healthz`` as webhook mode. Webhook mode: the webhook's own
server gets the ``/metrics`` route (``ecosystem_shared.webhook``), listening on the metrics port
as well when it differs from ``WEBHOOK_LISTEN_PORT``. A port that cannot be bound (taken, or a
host that is not this machine's) stops the bot at start with :class:`MetricsPortError`: a bot
that runs without the metrics it was told to serve would look down to Prometheus anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ecosystem_shared.health import WEBHOOK_HEALTH_PATH

if TYPE_CHECKING:
    from ecosystem_shared.config import SharedSettings
    from ecosystem_shared.metrics import BotMetrics

__all__ = [
    "HEALTH_PATH",
    "METRICS_PATH",
    "MetricsPortError",
    "add_health_route",
    "add_metrics_route",
    "listen_for_metrics",
    "start_metrics_server",
]

logger = logging.getLogger(__name__)

HEALTH_PATH = WEBHOOK_HEALTH_PATH  # the image's health check asks for it (health.py)
METRICS_PATH = "/metrics"
Status = Callable[[], dict[str, Any]]


class MetricsPortError(RuntimeError):
    """METRICS_HOST:METRICS_PORT cannot be listened on."""


def add_metrics_route(app: web.Application, metrics: BotMetrics) -> None:
    from ecosystem_shared.metrics import CONTENT_TYPE

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get(METRICS_PATH, scrape)


def add_health_route(app: web.Application, bot_name: str, status: Status) -> None:
    """``GET /healthz``: 200 with ``{"status": "ok", "bot": ..., **status()}`` while serving."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "bot": bot_name, **status()})

    app.router.add_get(HEALTH_PATH, health)


async def listen_for_metrics(runner: web.AppRunner, settings: SharedSettings) -> None:
    """Add a site on the metrics address to ``runner``, or raise :class:`MetricsPortError`."""
    host, port = settings.METRICS_HOST, settings.METRICS_PORT
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        why = error.strerror or str(error)
        raise MetricsPortError(
            f"METRICS_PORT {port} on METRICS_HOST {host} cannot be listened on ({why}):"
            " choose a free port, or METRICS_PORT=0 to serve no metrics"
        ) from None
    logger.info("Metrics served on http://%s:%d%s", host, port, METRICS_PATH)


async def start_metrics_server(
    metrics: BotMetrics, settings: SharedSettings, status: Status
) -> Callable[[], Awaitable[None]]:
    """Serve ``/metrics`` and ``/healthz`` (polling mode); returns the coroutine that stops it."""
    app = web.Application()
    add_metrics_route(app, metrics)
    add_health_route(app, settings.BOT_NAME, status)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await listen_for_metrics(runner, settings)
    except MetricsPortError:
        await runner.cleanup()
        raise
    return runner.cleanup
