"""Databases copied from a template ahead of the tests and dropped behind them."""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import urlsplit

from ecosystem_shared.testing.postgres.admin import (
    create_database,
    drop_database,
    new_database_name,
    with_database,
)


class DatabaseCopies:
    """Copies of a template database made ahead, and dropped after use, on background threads.

    Making a copy costs PostgreSQL 0.1-0.3 s (dropping one much less): in the test's path, that
    is most of a fast test's time. Here ``workers`` threads keep ``ahead`` copies ready while
    tests run (PostgreSQL works on another core while the tests wait for I/O) and drop used
    ones behind them. Drops come before new copies, so used copies never pile up.
    """

    def __init__(
        self,
        server: str,
        template: str | None,
        *,
        ahead: int = 4,
        workers: int = 2,
        prefix: str = "test",
    ) -> None:
        self.server, self.template, self.ahead, self.prefix = server, template, ahead, prefix
        self._ready: list[str] = []
        self._drops: list[str] = []
        self._creating = 0
        self._error: BaseException | None = None  # a failed copy: every later take() raises it
        self._drop_errors: list[BaseException] = []  # raised by close(), at the session's end
        self._closing = False
        self._changed = threading.Condition()
        self._workers = [
            threading.Thread(target=self._work, name=f"database-copies-{n}", daemon=True)
            for n in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def take(self) -> str:
        """The URL of a fresh copy (waits for one); the background's failure is raised here."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready or self._error is not None)
            if self._error is not None:
                raise self._error
            name = self._ready.pop(0)
            self._changed.notify_all()
        return with_database(self.server, name)

    def give_back(self, url: str) -> None:
        """Drop the copy at ``url`` in the background (connections still open are terminated)."""
        with self._changed:
            self._drops.append(urlsplit(url).path.lstrip("/"))
            self._changed.notify_all()

    def close(self) -> None:
        """Drop every copy left, then stop the threads; a drop that failed is raised here."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        for worker in self._workers:
            worker.join()
        if self._drop_errors:
            raise self._drop_errors[0]

    def _wanted(self) -> bool:
        return self._error is None and len(self._ready) + self._creating < self.ahead

    def _next_job(self) -> tuple[str, str] | None:
        with self._changed:
            self._changed.wait_for(lambda: self._closing or self._drops or self._wanted())
            if self._closing:  # nobody takes a copy any more
                self._drops += self._ready
                self._ready.clear()
            if self._drops:
                return "drop", self._drops.pop(0)
            if self._closing:
                return None
            self._creating += 1
            return "create", new_database_name(self.prefix)

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            action, name = job
            try:
                if action == "drop":
                    asyncio.run(drop_database(self.server, name))
                else:
                    asyncio.run(create_database(self.server, name, self.template))
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                with self._changed:
                    if action == "drop":
                        self._drop_errors.append(error)
                    else:
                        self._creating -= 1
                        self._error = error
                    self._changed.notify_all()
                continue
            if action == "create":
                with self._changed:
                    self._creating -= 1
                    self._ready.append(name)
                    self._changed.notify_all()
