"""Telegram's side of a webhook, for the fake Bot API: ``setWebhook``, ``getWebhookInfo``,
``deleteWebhook``, and updates delivered by HTTP POST.

Behaviour from the Bot API documentation (core.telegram.org/bots/api#setwebhook, read
2026-12-01) and from error texts quoted in public code (searched 2026-12-01):

- while a webhook is set, ``getUpdates`` fails with 409 "Conflict: can't use getUpdates method
  while webhook is active; use deleteWebhook to delete the webhook first";
- each update is POSTed as JSON with ``X-Telegram-Bot-Api-Secret-Token`` when a secret is set;
  a response other than 2xx (or no response) is retried later, and ``getWebhookInfo`` reports
  ``pending_update_count`` and ``last_error_message`` ("Wrong response from the webhook:
  502 Bad Gateway", "Connection refused");
- at most ``max_connections`` (1-100, default 40) requests are in flight at once;
- the secret is 1-256 characters of ``A-Z a-z 0-9 _ -`` ("Bad Request: secret token contains
  unallowed characters"); the URL must be HTTPS ("Bad Request: bad webhook: An HTTPS URL must
  be provided for webhook").

Concessions of the fake: plain ``http://`` is accepted for loopback hosts (tests run a real
reverse proxy on 127.0.0.1 without TLS); retries come after 0.1-2 s instead of Telegram's longer
back-off; a method returned in the webhook's response body is not executed (the generated bots
call the API themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

__all__ = ["SECRET_HEADER", "Delivery", "UpdateQueue", "Webhook", "WebhookDelivery"]

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active;"
    " use deleteWebhook to delete the webhook first"
)
HTTPS_REQUIRED = "An HTTPS URL must be provided for webhook"
REQUEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: frozenset[str] | None  # None: as before / the default set


@dataclass(frozen=True)
class Delivery:
    """One POST of an update: the HTTP status, or ``None`` when no response came."""

    update_id: int
    status: int | None
    error: str | None
    time: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class UpdateQueue(Protocol):
    """What the delivery needs of the fake Bot API (``fake_bot_api.FakeBotAPI`` is one); a
    protocol, so that this module does not import the server that imports it."""

    allowed_updates: frozenset[str]
    default_allowed: frozenset[str]

    @property
    def pending(self) -> int: ...

    @property
    def wakeup_event(self) -> asyncio.Event: ...

    def wakeup(self) -> None: ...

    def drop_pending(self) -> None: ...

    def deliverable_updates(self) -> list[dict[str, Any]]: ...

    def confirm(self, update: dict[str, Any]) -> None: ...


class WebhookDelivery:
    """Holds the webhook of one :class:`FakeBotAPI` and delivers its queued updates."""

    def __init__(self, api: UpdateQueue, error_factory: Callable[[int, str], Exception]) -> None:
        self.api = api
        self.webhook: Webhook | None = None
        self.deliveries: list[Delivery] = []
        self.last_error: tuple[int, str] | None = None  # (unix time, message)
        self._error = error_factory
        self._task: asyncio.Task[None] | None = None
        self._semaphore = asyncio.Semaphore(40)
        self._in_flight: set[int] = set()
        self._retry_at: dict[int, float] = {}
        self._attempts: dict[int, int] = {}
        self._posts: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return self.webhook is not None

    # ------------------------------------------------------------------ Bot API methods
    def set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return self.delete_webhook(params)
        parts = urlsplit(url)
        if not parts.hostname or (
            parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK)
        ):
            raise self._error(400, f"Bad Request: bad webhook: {HTTPS_REQUIRED}")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise self._error(400, "Bad Request: secret token contains unallowed characters")
        connections = int(params.get("max_connections") or 40)
        if not 1 <= connections <= 100:
            raise self._error(400, "Bad Request: max_connections must be between 1 and 100")
        allowed = params.get("allowed_updates")
        allowed_set = frozenset(allowed) if isinstance(allowed, list) else None
        if allowed_set is None and self.webhook is not None:
            allowed_set = self.webhook.allowed_updates  # "If not specified, the previous setting"
        if allowed_set is not None:
            self.api.allowed_updates = allowed_set or self.api.default_allowed
        if params.get("drop_pending_updates"):
            self.api.drop_pending()
        if self.webhook is None or self.webhook.max_connections != connections:
            self._semaphore = asyncio.Semaphore(connections)
        self.webhook = Webhook(url, str(secret) if secret else None, connections, allowed_set)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver_loop())
        self.api.wakeup()
        return True

    def delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self.api.drop_pending()
        self.api.wakeup()
        return True

    def info(self) -> dict[str, Any]:
        webhook = self.webhook
        result: dict[str, Any] = {"url": webhook.url if webhook else ""}
        result |= {"has_custom_certificate": False, "pending_update_count": self.api.pending}
        if webhook is not None:
            result["max_connections"] = webhook.max_connections
            if webhook.allowed_updates is not None:
                result["allowed_updates"] = sorted(webhook.allowed_updates)
            result["ip_address"] = "127.0.0.1"
        if self.last_error is not None:
            result["last_error_date"], result["last_error_message"] = self.last_error
        return result

    def conflict(self) -> Exception:
        return self._error(409, WEBHOOK_CONFLICT)

    # ------------------------------------------------------------------ delivery
    async def stop(self) -> None:
        self.webhook = None
        tasks = [t for t in (self._task, *self._posts) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _deliver_loop(self) -> None:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        ) as session:
            while self.webhook is not None:
                self.api.wakeup_event.clear()
                now = time.monotonic()
                for update in self.api.deliverable_updates():
                    update_id = int(update["update_id"])
                    if update_id in self._in_flight or self._retry_at.get(update_id, 0) > now:
                        continue
                    if self._semaphore.locked():
                        break
                    await self._semaphore.acquire()
                    self._in_flight.add(update_id)
                    post = asyncio.create_task(self._post(session, self.webhook, update))
                    self._posts.add(post)
                    post.add_done_callback(self._posts.discard)
                waits = [at - now for at in self._retry_at.values() if at > now]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.api.wakeup_event.wait(), min([0.5, *waits]))

    async def _post(
        self, session: aiohttp.ClientSession, webhook: Webhook, update: dict[str, Any]
    ) -> None:
        update_id = int(update["update_id"])
        headers = {"Content-Type": "application/json"}
        if webhook.secret_token:
            headers[SECRET_HEADER] = webhook.secret_token
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(webhook.url, data=json.dumps(update), headers=headers) as resp:
                await resp.read()
                status = resp.status
                if not 200 <= status < 300:
                    error = f"Wrong response from the webhook: {status} {resp.reason}"
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            error = "Connection refused" if isinstance(failure, OSError) else str(failure)
            error = error or type(failure).__name__
        finally:
            self._in_flight.discard(update_id)
            self._semaphore.release()
        self.deliveries.append(Delivery(update_id, status, error, time.monotonic()))
        if error is None:
            self._retry_at.pop(update_id, None)
            self._attempts.pop(update_id, None)
            self.api.confirm(update)
        else:
            self.last_error = (int(time.time()), error)
            attempts = self._attempts[update_id] = self._attempts.get(update_id, 0) + 1
            self._retry_at[update_id] = time.monotonic() + min(2.0, 0.1 * 2 ** (attempts - 1))
        self.api.wakeup()
