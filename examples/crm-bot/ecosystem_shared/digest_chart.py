"""The digest chart, seen from a bot: query the numbers, draw them in a subprocess.

matplotlib is never imported here: :mod:`ecosystem_shared.chart` runs as
``python -m ecosystem_shared.chart`` for each chart and exits, so a bot's resident memory does
not grow by the ~40 MiB that matplotlib, numpy and the fonts would keep until the bot exits.
Every failure (database, subprocess error, timeout, not a PNG) is logged, recorded as an
``error`` event and turns into "no chart": the digest text goes out regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from ecosystem_shared.analytics import OP_TIMEOUT, Analytics
from ecosystem_shared.analytics_store import RETRYABLE
from ecosystem_shared.db import Database
from ecosystem_shared.stats import CHART_DAYS, ChartData, query_chart_data

logger = logging.getLogger(__name__)

__all__ = ["CHART_COMMAND", "ChartService", "run_chart_process"]

CHART_COMMAND = (sys.executable, "-m", "ecosystem_shared.chart")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STDERR_TAIL = 500  # characters of the subprocess's stderr kept in the log and the error event
# The directory holding ecosystem_shared, so the subprocess imports the same code.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SECRET_NAMES = re.compile(r"TOKEN|PASSWORD|SECRET|DATABASE_URL|DSN", re.IGNORECASE)


class ChartError(Exception):
    """The chart subprocess failed, timed out or printed something that is not a PNG."""


async def run_chart_process(
    data: ChartData, *, timeout: float, command: tuple[str, ...] = CHART_COMMAND
) -> bytes:
    """PNG bytes drawn by ``command`` from ``data`` (JSON on its stdin); ChartError otherwise."""
    # The drawing needs neither the bot's token nor the database's password.
    env = {name: value for name, value in os.environ.items() if not SECRET_NAMES.search(name)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(
            process.communicate(data.to_json().encode()), timeout
        )
    except TimeoutError:
        raise ChartError(f"no chart after {timeout:g} s") from None
    finally:
        if process.returncode is None:  # timed out or cancelled: do not leave it running
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
        raise ChartError(f"chart process exited with {process.returncode}: {tail}")
    if not stdout.startswith(PNG_SIGNATURE):
        raise ChartError(f"chart process printed {len(stdout)} bytes, not a PNG")
    return stdout


class ChartService:
    """The ecosystem's 14-day chart as PNG bytes, or None (disabled, no data, failure)."""

    def __init__(
        self,
        db: Database,
        analytics: Analytics,
        *,
        timezone: str,
        language: str,
        timeout: float,
        enabled: bool = True,
        command: tuple[str, ...] = CHART_COMMAND,
    ) -> None:
        self.db = db
        self.analytics = analytics
        self.timezone = timezone
        self.language = language
        self.timeout = timeout
        self.enabled = enabled and db.enabled
        self.command = command

    async def data(self, end: datetime | None = None) -> ChartData:
        """The numbers of the :data:`CHART_DAYS` days up to ``end`` (now by default)."""
        await self.analytics.flush()
        async with self.db.acquire(timeout=OP_TIMEOUT) as conn:
            return await query_chart_data(
                conn,
                end or datetime.now(UTC),
                self.timezone,
                language=self.language,
                days=CHART_DAYS,
                timeout=OP_TIMEOUT,
            )

    async def render(self, end: datetime | None = None) -> bytes | None:
        """The chart, or None: never raises (bar cancellation), so a digest does not fail because
        of it, nor wait for the drawing longer than ``timeout``."""
        if not self.enabled:
            return None
        started = time.monotonic()
        try:
            data = await self.data(end)  # each statement limited to OP_TIMEOUT
            if data.empty:
                logger.info("Digest chart: no data in %d days, text only", CHART_DAYS)
                return None
            png = await run_chart_process(data, timeout=self.timeout, command=self.command)
        except (ChartError, *RETRYABLE, asyncpg.PostgresError, OSError, ValueError) as error:
            await self._failed(str(error) or type(error).__name__)
        else:
            logger.info("Digest chart: %d bytes in %.1f s", len(png), time.monotonic() - started)
            return png
        return None

    async def _failed(self, reason: str) -> None:
        logger.error("Digest chart failed, text only: %s", reason)
        await self.analytics.track_error(None, f"digest chart: {reason}")
