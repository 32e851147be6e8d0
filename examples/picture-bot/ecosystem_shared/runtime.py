"""Start a bot: settings, logging, database, analytics, middlewares, digest, polling, shutdown.

``RUN_MODE=webhook`` serves updates over HTTP instead of polling (``ecosystem_shared.webhook``),
and ``REDIS_URL`` shares FSM, per-user locks and rate limits between instances
(``ecosystem_shared.shared_state``).

A bot's ``__main__`` calls :func:`run_bot` with its settings class and router factory.
:func:`build_services`, :func:`build_dispatcher` and :func:`build_scheduler` are separate so
that tests can assemble the same dispatcher and digest schedule in-process (the hostile-updates
harness and the digest tests do; the benchmark runs ``python -m <bot>`` as a process).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytz
from aiogram import Bot, Dispatcher, Router
from aiogram.types import BotCommand
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.analytics_maintenance import MAINTENANCE_JOB_ID, AnalyticsMaintenance
from ecosystem_shared.audience_tracking import BlockedChatWatch, audience_router
from ecosystem_shared.bot_registry import BotRegistration
from ecosystem_shared.broadcast_admin import ProgressReporter, broadcast_router
from ecosystem_shared.broadcast_sender import BroadcastSender
from ecosystem_shared.config import SharedSettings, load_settings
from ecosystem_shared.db import Database
from ecosystem_shared.digest import last_digest_sent, schedule_digest, send_digest_once
from ecosystem_shared.digest_chart import ChartService
from ecosystem_shared.fsm_memory import CompactMemoryStorage
from ecosystem_shared.health import touch_liveness
from ecosystem_shared.log import setup_logging
from ecosystem_shared.metrics import BotMetrics
from ecosystem_shared.metrics_server import MetricsPortError, start_metrics_server
from ecosystem_shared.middlewares import ErrorReporter, RateLimitMiddleware, skip_unknown_updates
from ecosystem_shared.middlewares.rate_limit import RedisRateLimiter
from ecosystem_shared.migrations import shared_migrations
from ecosystem_shared.notifications import Notifier
from ecosystem_shared.telegram import PollingWatch, build_bot
from ecosystem_shared.texts import shared_texts

if TYPE_CHECKING:  # imported when used: a polling bot without REDIS_URL loads neither
    from ecosystem_shared.shared_state import SharedState

S = TypeVar("S", bound=SharedSettings)
RouterFactory = Callable[[Any], Router]
Clock = Callable[[tzinfo], datetime]  # datetime.now's signature: the current time in a zone

logger = logging.getLogger(__name__)

LIVENESS_SECONDS = 30.0
# No getUpdates answered for this long (aiogram's long poll is 10 s, its retry backoff at most
# 5 s): stop touching the liveness file, so the health check reports the bot cut off.
POLLING_STALE_SECONDS = 90.0


# What aiogram itself gives handlers (dispatcher, FSM and user-context middlewares).
_AIOGRAM_DATA = frozenset(
    ("bot", "bots", "dispatcher", "event_update", "event_router", "event_from_user", "event_chat",
     "event_thread_id", "event_context", "handler", "state", "raw_state", "fsm_storage")
)  # fmt: skip


async def _call_if_present(service: object, method: str) -> bool:
    """``service.<method>()``, awaited when it returns an awaitable (a bot's service may be
    sync or async); False when the service has no such method."""
    function = getattr(service, method, None)
    if not callable(function):
        return False
    result = function()
    if inspect.isawaitable(result):
        await result
    return True


@dataclass(slots=True)
class Services:
    """Everything handlers may ask for by parameter name (dispatcher workflow data)."""

    settings: SharedSettings
    bot: Bot
    db: Database
    analytics: Analytics
    notifier: Notifier
    charts: ChartService
    metrics: BotMetrics
    maintenance: AnalyticsMaintenance
    broadcasts: BroadcastSender
    broadcast_progress: ProgressReporter
    registration: BotRegistration  # slug -> BOT_NAME in shared.bots, once connected
    shared: SharedState | None = None  # REDIS_URL set: state shared by every instance
    # The bot's own services (run_bot's ``services=``), by the parameter name handlers use.
    own: dict[str, object] = field(default_factory=dict)

    def add_own(self, services: Mapping[str, object]) -> None:
        """Give handlers the bot's own services too; a name already taken is refused."""
        taken = set(self.workflow_data()) | _AIOGRAM_DATA
        clashes = sorted(taken & set(services))
        if clashes:
            raise ValueError(f"bot services may not be named {', '.join(clashes)}: already taken")
        self.own.update(services)

    async def start_own(self) -> None:
        """Start the bot's own services that need it (a background refresh, a connection), in
        the order added, once the database and analytics run: each ``start()`` is called and
        awaited when it returns an awaitable. A failure stops the bot before it takes updates
        (what started is closed by :meth:`close_own` all the same)."""
        for name, service in self.own.items():
            try:
                await _call_if_present(service, "start")
            except Exception as error:
                raise RuntimeError(f"the bot service {name!r} could not start: {error}") from error

    async def close_own(self) -> None:
        """Close the bot's own services (the last added first): each ``close()`` is called and
        awaited when it returns an awaitable; a failure is logged and the rest still close."""
        closed = []
        for name, service in reversed(list(self.own.items())):
            try:
                called = await _call_if_present(service, "close")
            except Exception:
                logger.exception("Closing the bot service %r failed", name)
            else:
                if called:
                    closed.append(name)
        if closed:
            logger.info("Closed the bot's services: %s", ", ".join(closed))

    def workflow_data(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "db": self.db,
            "analytics": self.analytics,
            "notifier": self.notifier,
            "charts": self.charts,
            "metrics": self.metrics,
            "broadcasts": self.broadcasts,
            "broadcast_progress": self.broadcast_progress,
            "bot_name": self.settings.BOT_NAME,
            **self.own,
        }


# A bot's own services from its settings and the shared services: run_bot(..., services=).
BotServicesFactory = Callable[[S, Services], Mapping[str, object]]


def build_services(
    settings: SharedSettings,
    bot: Bot,
    migrations: Sequence[Path] = (),
    metrics: BotMetrics | None = None,
) -> Services:
    """The bot's services. Metrics are collected when ``METRICS_PORT`` is set or ``metrics`` is
    given (tests); otherwise ``metrics`` is an idle registry and the bot pays nothing for it."""
    db = Database(
        settings.database_dsn,
        min_size=settings.DB_POOL_MIN_SIZE,
        max_size=settings.DB_POOL_MAX_SIZE,
        reconnect_seconds=settings.DB_RECONNECT_SECONDS,
        migrations=[*shared_migrations(), *migrations],
    )
    analytics = Analytics(
        db,
        settings.BOT_NAME,
        enabled=settings.ENABLE_ANALYTICS,
        buffer_size=settings.ANALYTICS_BUFFER_SIZE,
        batch_size=settings.ANALYTICS_BATCH_SIZE,
        flush_seconds=settings.ANALYTICS_FLUSH_SECONDS,
    )
    charts = ChartService(
        db,
        analytics,
        timezone=settings.DIGEST_TIMEZONE,
        language=settings.LANGUAGE,
        timeout=settings.DIGEST_CHART_TIMEOUT,
        enabled=settings.DIGEST_CHART,
    )
    notifier = Notifier(bot, settings.ANALYTICS_CHANNEL_ID, settings.LANGUAGE, charts)
    bot.session.middleware(BlockedChatWatch(analytics))  # a 403 to any send marks the user
    if metrics is None:
        metrics = BotMetrics(settings.bot_label, polling=settings.RUN_MODE == "polling")
        collect = bool(settings.METRICS_PORT)
    else:
        collect = True
    if collect:
        metrics.instrument_session(bot.session)
        metrics.watch(analytics, db)
    maintenance = AnalyticsMaintenance(
        db,
        bot_name=analytics.bot_name,
        timezone=settings.DIGEST_TIMEZONE,
        main_events=settings.ANALYTICS_MAIN_EVENTS,
        retention_months=settings.ANALYTICS_RETENTION_MONTHS,
    )
    broadcasts = BroadcastSender(db, bot, settings.BOT_NAME, settings.BROADCAST_RATE)
    progress = ProgressReporter(bot, db, settings)
    broadcasts.on_progress.append(progress.report)
    shared = None
    if settings.redis_url:
        from ecosystem_shared.shared_state import SharedState

        shared = SharedState(settings.redis_url)
    return Services(
        settings,
        bot,
        db,
        analytics,
        notifier,
        charts,
        metrics,
        maintenance,
        broadcasts,
        progress,
        BotRegistration(db, settings.bot_label, settings.BOT_NAME),
        shared,
    )


def build_dispatcher(services: Services, routers: Sequence[Router]) -> Dispatcher:
    settings = services.settings
    texts = shared_texts(settings.LANGUAGE)
    shared = services.shared
    fsm: dict[str, Any]
    if shared is not None:
        fsm = {"storage": shared.storage, "events_isolation": shared.events_isolation}
    else:  # not aiogram's default MemoryStorage: it keeps a record of every user it has seen
        fsm = {"storage": CompactMemoryStorage()}
    dp = Dispatcher(**fsm, **services.workflow_data())
    secrets = settings.log_secrets()
    # After every errors handler of the bot's routers: see middlewares/errors.py.
    dp.errors.outer_middleware(ErrorReporter(texts.error, secrets))
    dp.update.middleware(skip_unknown_updates)  # inner: right before aiogram's update routing
    limiter = RateLimitMiddleware(
        settings.RATE_LIMIT_SECONDS,
        texts.rate_limited,
        shared=RedisRateLimiter(shared.redis, settings.RATE_LIMIT_SECONDS) if shared else None,
        health=shared.health if shared else None,
    )
    if services.metrics.collecting:
        limiter.on_throttled = services.metrics.throttled.inc
    # One limiter for both, so a user cannot double their budget with buttons.
    dp.message.outer_middleware(limiter)
    dp.callback_query.outer_middleware(limiter)
    # my_chat_member of private chats -> the audience (then passed on to the bot's routers).
    # The admin's /broadcast and /broadcasts (anyone else falls through to the bot's routers).
    dp.include_routers(audience_router(), broadcast_router(), *routers)
    if services.metrics.collecting:
        services.metrics.instrument(dp)
    return dp


async def _keep_alive(path: Path | None, polling: PollingWatch | None) -> None:
    """Touch the liveness file while Telegram answers our long polls (webhook mode: while the
    server's event loop runs)."""
    while path is not None:
        if polling is None or polling.seconds_since_answer < POLLING_STALE_SECONDS:
            touch_liveness(path)
        await asyncio.sleep(LIVENESS_SECONDS)


def build_scheduler(services: Services, clock: Clock | None = None) -> AsyncIOScheduler:
    """The bot's scheduler (not started) with the daily digest job when a channel and a database
    are configured. ``clock`` gives the current time in a zone (tests pass a fake one: the
    catch-up decision and the digest's day follow it; the job's trigger is APScheduler's)."""
    settings = services.settings
    tz = pytz.timezone(settings.DIGEST_TIMEZONE)
    now = clock or datetime.now
    scheduler = AsyncIOScheduler(timezone=tz)

    async def digest_job() -> None:
        await send_digest_once(
            services.db,
            services.analytics,
            services.notifier,
            day=now(tz).date(),
            bot_name=settings.BOT_NAME,
            timezone=settings.DIGEST_TIMEZONE,
        )
        await _refresh_last_digest(services)  # sent by this bot or another one

    if settings.ANALYTICS_CHANNEL_ID is not None and services.db.enabled:
        schedule_digest(
            scheduler,
            at=settings.DIGEST_TIME,
            timezone=settings.DIGEST_TIMEZONE,
            callback=digest_job,
            now=now(tz),
        )
    if services.db.enabled:
        # Partitions ahead, yesterday's rollup, retention: shortly after each local midnight.
        scheduler.add_job(
            services.maintenance.run,
            CronTrigger(hour=0, minute=5, timezone=tz),
            id=MAINTENANCE_JOB_ID,
            replace_existing=True,
            misfire_grace_time=6 * 3600,
            coalesce=True,
            max_instances=1,
        )
    return scheduler


async def _refresh_last_digest(services: Services) -> None:
    if services.db.available and services.metrics.collecting:
        sent_at = await last_digest_sent(services.db)
        if sent_at is not None:
            services.metrics.digest_sent(sent_at)


async def run_services(
    services: Services,
    dp: Dispatcher,
    commands: Sequence[BotCommand] = (),
) -> None:
    scheduler = build_scheduler(services)
    settings = services.settings
    webhook = settings.RUN_MODE == "webhook"
    metrics = services.metrics if settings.METRICS_PORT else None
    stop_metrics = None
    if metrics is not None and not webhook:  # a port problem stops the bot before anything
        try:
            stop_metrics = await start_metrics_server(metrics, settings, partial(_status, services))
        except MetricsPortError:
            await services.bot.session.close()
            raise
    services.maintenance.start()  # runs once connected: registered before the connection
    services.registration.start()  # likewise: a database down at start delays it, no more
    await services.db.start()
    await services.analytics.start()
    if services.shared is not None:
        await services.shared.check()
    await _refresh_last_digest(services)
    scheduler.start()
    polling = None if webhook else PollingWatch()
    if polling is not None:
        services.bot.session.middleware(polling)
    liveness = asyncio.create_task(_keep_alive(settings.HEALTH_FILE, polling))
    # Broadcast jobs of this bot, sent between replies (one sender per job: the database says).
    sender = (
        asyncio.create_task(services.broadcasts.run(), name="broadcasts")
        if services.db.enabled
        else None
    )
    try:
        await services.start_own()
        if commands:
            with contextlib.suppress(Exception):
                await services.bot.set_my_commands(list(commands))
        # Everything imported so far (aiogram's models above all) lives until exit: move it out
        # of the collector's sight, or each full collection rescans ~200k objects mid-burst.
        gc.collect()
        gc.freeze()
        if webhook:
            from ecosystem_shared.webhook import serve_webhook

            await serve_webhook(services.bot, dp, settings, partial(_status, services), metrics)
        else:
            await dp.start_polling(
                services.bot,
                allowed_updates=dp.resolve_used_update_types(),
                handle_signals=True,
                close_bot_session=False,
                # A burst of updates is handled this many at a time (see config.py).
                tasks_concurrency_limit=settings.MAX_CONCURRENT_UPDATES,
            )
    finally:
        liveness.cancel()
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await services.close_own()  # before the database and the session they may use
        if stop_metrics is not None:
            await stop_metrics()
        scheduler.shutdown(wait=False)
        await services.maintenance.close()
        services.registration.close()
        await services.analytics.close()
        await services.db.close()
        if services.shared is not None:
            await services.shared.close()
        await services.bot.session.close()
    logger.info("Stopped cleanly")  # not reached when polling ended with an error


def _status(services: Services) -> dict[str, Any]:
    """What the webhook's health endpoint reports beyond "ok" (degraded, still answering)."""
    status: dict[str, Any] = {"database": "ok" if services.db.available else "unavailable"}
    if services.shared is not None:
        status["redis"] = "unavailable" if services.shared.health.down else "ok"
    return status


def run_bot(
    settings_cls: type[S],
    build_router: RouterFactory,
    *,
    migrations: Sequence[Path] = (),
    commands: Sequence[BotCommand] = (),
    services: BotServicesFactory[S] | None = None,
) -> int:
    """Synchronous entry point used by ``python -m <package>``; returns the exit status.

    ``services(settings, shared)`` builds the bot's own services (an API client, a repository)
    once the shared ones exist, inside the event loop: its ``{name: object}`` joins the
    dispatcher's workflow data, so handlers ask for each by parameter name; each object with a
    ``start()`` is started before the first update and each with a ``close()`` is closed at
    shutdown (see :meth:`Services.start_own` and :meth:`Services.close_own`).
    """
    settings = load_settings(settings_cls)
    setup_logging(settings.LOG_LEVEL, settings.log_secrets())
    logger.info("Starting %s", settings.BOT_NAME)

    async def main() -> None:
        bot = build_bot(settings)
        shared = build_services(settings, bot, migrations)
        if services is not None:
            shared.add_own(services(settings, shared))
        dp = build_dispatcher(shared, [build_router(settings)])
        await run_services(shared, dp, commands)

    try:
        asyncio.run(main())
    except MetricsPortError as error:
        logger.critical("Configuration error: %s", error)
        return 2
    except Exception:
        # Logged rather than left to the interpreter, whose traceback would skip the redaction.
        logger.critical("Stopped by an unexpected error", exc_info=True)
        return 1
    return 0


__all__ = [
    "BotServicesFactory",
    "Clock",
    "Services",
    "build_dispatcher",
    "build_scheduler",
    "build_services",
    "run_bot",
    "run_services",
]
