"""Prometheus metrics of one bot: what it receives, handles, asks Telegram, writes, and when.

Collected only when ``METRICS_PORT`` is set (the runtime then wires what follows in); otherwise
the bot's ``BotMetrics`` stays idle and costs nothing per update. Every series is named
``tgbot_*`` and labelled ``bot`` (the bot's slug), so one Prometheus tells the bots of a fleet
apart however they are deployed (a container each, or children of the host).
Labels hold only bounded values: update types, handler and method names, outcome words, exception
class names. Never a user id, chat id or text: 10,000 users make no more series than 10
(tests/shared/test_metrics.py asserts it).

:class:`BotMetrics` owns a private :class:`~prometheus_client.CollectorRegistry` (never the
library's global one: the host forks several bots from one process, and tests build several bots
in one). Services reach it through aiogram's DI as ``metrics``; the runtime wires it into:

- the dispatcher (:class:`UpdateMetrics`, an outer middleware of ``dp.update``, and
  :class:`HandlerMetrics`, an inner middleware of every event type): updates by type, handled
  updates and duration by handler, errors by handler and exception class;
- the Bot API session (:class:`RequestMetrics`, a ``BaseRequestMiddleware`` inside the retries,
  so each attempt counts): requests by method and outcome, their duration, and the last
  successful ``getUpdates``; the retry middleware adds the seconds it waited on ``retry_after``;
- the rate limiter (throttled updates) and the digest job (time of the last digest sent);
- state read when Prometheus scrapes (:class:`StateCollector`): analytics written, dropped and
  pending, database availability and pool use: nothing is paid for them between scrapes.

``ecosystem_shared.metrics_server`` serves ``/metrics`` (``METRICS_PORT``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.dispatcher.event.handler import HandlerObject
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import GetUpdates, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ecosystem_shared.telegram import RetryMiddleware

if TYPE_CHECKING:
    from aiogram.client.session.base import BaseSession

__all__ = [
    "CONTENT_TYPE",
    "OUTCOMES",
    "BotMetrics",
    "HandlerMetrics",
    "RequestMetrics",
    "StateCollector",
    "UpdateMetrics",
    "outcome_of",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text exposition format
# Handlers answer in milliseconds; media and the digest take seconds; past 60 s something hangs.
HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Bot API calls: a few ms to a Local Bot API server, ~100 ms to the cloud, uploads longer.
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OUTCOMES = ("ok", "retry_after", "forbidden", "bad_request", "server_error", "network", "error")


def outcome_of(error: BaseException | None) -> str:
    """The ``outcome`` label of a Bot API request that raised ``error`` (None: it succeeded).

    ``error`` is any other Telegram error (401 token revoked, 404, 409 conflict, 413 too large).
    """
    if error is None:
        return "ok"
    if isinstance(error, TelegramRetryAfter):
        return "retry_after"
    if isinstance(error, TelegramForbiddenError):
        return "forbidden"
    if isinstance(error, TelegramBadRequest):
        return "bad_request"
    if isinstance(error, TelegramServerError):
        return "server_error"
    if isinstance(error, TelegramNetworkError):
        return "network"
    return "error"


class StateSource(Protocol):
    """What :class:`StateCollector` reads at scrape time (``Analytics`` and ``Database``)."""

    def counters(self) -> dict[str, int]: ...


class PoolSource(Protocol):
    @property
    def available(self) -> bool: ...

    @property
    def enabled(self) -> bool: ...

    def pool_usage(self) -> tuple[int, int]: ...


class StateCollector(Collector):
    """Analytics and database state, read when Prometheus scrapes (free between scrapes)."""

    def __init__(self) -> None:
        self.analytics: StateSource | None = None
        self.db: PoolSource | None = None

    def collect(self) -> Iterator[Metric]:
        if self.analytics is not None:
            counters = self.analytics.counters()
            for name, help_text in (
                ("written", "Analytics events written to the database"),
                ("dropped", "Analytics events lost: buffer full or rejected by the database"),
            ):
                family = CounterMetricFamily(f"tgbot_analytics_events_{name}", help_text)
                family.add_metric([], counters[name])
                yield family
            yield GaugeMetricFamily(
                "tgbot_analytics_events_pending",
                "Analytics events waiting in the buffer for the database",
                value=counters["pending"],
            )
        db = self.db
        if db is not None and db.enabled:
            yield GaugeMetricFamily(
                "tgbot_database_available",
                "1 while the database is reachable, 0 during an outage",
                value=int(db.available),
            )
            size, in_use = db.pool_usage()
            yield GaugeMetricFamily(
                "tgbot_database_pool_connections", "Connections open in the pool", value=size
            )
            yield GaugeMetricFamily(
                "tgbot_database_pool_connections_in_use",
                "Connections of the pool taken by a query",
                value=in_use,
            )

    def describe(self) -> Iterable[Metric]:
        return []  # read at scrape time; nothing to check for name clashes at registration


class BotLabel(Collector):
    """Every sample of ``source`` with ``bot="<slug>"`` added: one constant label for the whole
    registry, the process and Python collectors' series included."""

    def __init__(self, source: CollectorRegistry, bot: str) -> None:
        self.source = source
        self.bot = bot

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                sample._replace(labels={"bot": self.bot, **sample.labels})
                for sample in family.samples
            ]
            yield labelled

    def describe(self) -> Iterable[Metric]:
        return []


class BotMetrics:
    """Every metric of one bot in its own registry; ``render()`` is the ``/metrics`` body."""

    def __init__(self, bot: str, *, polling: bool = True, process: bool = True) -> None:
        self.bot = bot
        inner = CollectorRegistry(auto_describe=True)
        self.updates = Counter(
            "tgbot_updates", "Updates received, by type", ["type"], registry=inner
        )
        self.handled = Counter(
            "tgbot_handled_updates",
            "Updates a handler ran for, by handler",
            ["handler"],
            registry=inner,
        )
        self.handler_duration = Histogram(
            "tgbot_handler_duration_seconds",
            "Time a handler took (its inner middlewares included)",
            ["handler"],
            buckets=HANDLER_BUCKETS,
            registry=inner,
        )
        self.handler_errors = Counter(
            "tgbot_handler_errors",
            "Handlers that raised, by handler and exception class",
            ["handler", "error"],
            registry=inner,
        )
        self.api_requests = Counter(
            "tgbot_api_requests",
            "Bot API requests (each attempt), by method and outcome",
            ["method", "outcome"],
            registry=inner,
        )
        self.api_duration = Histogram(
            "tgbot_api_request_duration_seconds",
            "Bot API request time, by method (getUpdates includes the long poll)",
            ["method"],
            buckets=REQUEST_BUCKETS,
            registry=inner,
        )
        self.retry_after_waited = Counter(
            "tgbot_api_retry_after_wait_seconds",
            "Seconds spent waiting before a retry because Telegram answered 429 retry_after",
            ["method"],
            registry=inner,
        )
        self.throttled = Counter(
            "tgbot_throttled_updates",
            "Messages and callback queries dropped by the per-user rate limit",
            registry=inner,
        )
        # Polling only: a webhook bot has no getUpdates, and a gauge stuck at 0 would alert.
        self.last_poll = (
            Gauge(
                "tgbot_polling_last_success_timestamp_seconds",
                "Unix time of the last getUpdates Telegram answered (0: none yet)",
                registry=inner,
            )
            if polling
            else None
        )
        self.last_digest = Gauge(
            "tgbot_digest_last_success_timestamp_seconds",
            "Unix time the ecosystem's daily digest was last sent (by any bot; 0: never seen)",
            registry=inner,
        )
        self._last_digest = 0.0
        self.started = Gauge(
            "tgbot_start_timestamp_seconds", "Unix time this bot process started", registry=inner
        )
        self.started.set_to_current_time()
        self.state = StateCollector()
        inner.register(self.state)
        if process:
            ProcessCollector(registry=inner)
            PlatformCollector(registry=inner)
            GCCollector(registry=inner)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BotLabel(inner, bot))
        self.collecting = False  # set once wired into a session (instrument_session)

    def watch(self, analytics: StateSource, db: PoolSource) -> None:
        """Report these at scrape time."""
        self.state.analytics = analytics
        self.state.db = db

    def instrument(self, dp: Dispatcher) -> None:
        """Count updates and time every handler of ``dp`` (its routers' included)."""
        dp.update.outer_middleware(UpdateMetrics(self))
        handlers = HandlerMetrics(self)
        for name, observer in dp.observers.items():
            if name not in ("update", "error"):
                observer.middleware(handlers)

    def instrument_session(self, session: BaseSession) -> None:
        """Count every attempt of every request (inside the retries), and the retries' waits."""
        for middleware in session.middleware[:]:
            if isinstance(middleware, RetryMiddleware):
                middleware.on_retry_after = self._waited
        session.middleware(RequestMetrics(self))
        self.collecting = True

    def _waited(self, method: str, seconds: float) -> None:
        self.retry_after_waited.labels(method).inc(seconds)

    def digest_sent(self, at: float | None = None) -> None:
        if not self.collecting:
            return
        value = time.time() if at is None else at
        if value > self._last_digest:
            self._last_digest = value
            self.last_digest.set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def series(self) -> int:
        """How many series a scrape returns (tests bound it)."""
        return sum(len(family.samples) for family in self.registry.collect())


def handler_name(handler: HandlerObject | None) -> str:
    """``module.function`` of a handler: a name in the bot's code, never the update's content."""
    if handler is None:
        return "unknown"
    callback = handler.callback
    module = getattr(callback, "__module__", None) or ""
    name = getattr(callback, "__qualname__", None) or type(callback).__qualname__
    return f"{module}.{name}" if module else name


class UpdateMetrics(BaseMiddleware):
    """Outer middleware of ``dp.update``: every update received, by type."""

    def __init__(self, metrics: BotMetrics) -> None:
        self.metrics = metrics
        # Labelled children kept (labels() takes a lock and validates): a few per bot.
        self._by_type: dict[str, Counter] = {}

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        kind = "unknown"
        if isinstance(event, Update):
            try:
                kind = event.event_type
            except Exception:  # noqa: BLE001 - aiogram's lookup error for types it lacks
                kind = "unknown"
        counter = self._by_type.get(kind)
        if counter is None:
            counter = self._by_type[kind] = self.metrics.updates.labels(kind)
        counter.inc()
        return await handler(event, data)


class HandlerMetrics(BaseMiddleware):
    """Inner middleware of every event type: handled updates, duration and errors by handler."""

    def __init__(self, metrics: BotMetrics) -> None:
        self.metrics = metrics
        self._by_callback: dict[Any, tuple[str, Counter, Histogram]] = {}

    def _children(self, handler: HandlerObject | None) -> tuple[str, Counter, Histogram]:
        key = handler.callback if handler is not None else None
        found = self._by_callback.get(key)
        if found is None:
            name = handler_name(handler)
            found = (
                name,
                self.metrics.handled.labels(name),
                self.metrics.handler_duration.labels(name),
            )
            self._by_callback[key] = found
        return found

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        name, handled, duration = self._children(data.get("handler"))
        started = time.perf_counter()
        try:
            return await handler(event, data)
        except Exception as error:
            self.metrics.handler_errors.labels(name, type(error).__name__).inc()
            raise
        finally:
            handled.inc()
            duration.observe(time.perf_counter() - started)


class RequestMetrics(BaseRequestMiddleware):
    """Every Bot API request: outcome, duration, and the last answered ``getUpdates``."""

    def __init__(self, metrics: BotMetrics) -> None:
        self.metrics = metrics
        self._requests: dict[tuple[str, str], Counter] = {}
        self._durations: dict[str, Histogram] = {}

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        name = method.__api_method__
        started = time.perf_counter()
        try:
            result = await make_request(bot, method)
        except Exception as error:  # a cancelled request (shutdown) has no outcome: not counted
            self._record(name, started, error)
            raise
        self._record(name, started, None)
        if isinstance(method, GetUpdates) and self.metrics.last_poll is not None:
            self.metrics.last_poll.set_to_current_time()
        return result

    def _record(self, method: str, started: float, error: Exception | None) -> None:
        elapsed = time.perf_counter() - started
        key = (method, outcome_of(error))
        requests = self._requests.get(key)
        if requests is None:
            requests = self._requests[key] = self.metrics.api_requests.labels(*key)
        duration = self._durations.get(method)
        if duration is None:
            duration = self._durations[method] = self.metrics.api_duration.labels(method)
        requests.inc()
        duration.observe(elapsed)
