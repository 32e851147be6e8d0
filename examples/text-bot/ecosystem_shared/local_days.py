"""Local days of a time zone as UTC bounds (the digest's days, /stats, the audience counts)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time

import pytz


def local_day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """Start and end (exclusive, UTC) of ``day`` in ``timezone``: 23 or 25 hours on DST days."""
    zone = pytz.timezone(timezone)
    start, end = (
        zone.localize(datetime.combine(d, dt_time())).astimezone(UTC)
        for d in (day, day + timedelta(days=1))
    )
    return start, end


def yesterday(timezone: str, now: datetime | None = None) -> date:
    """The local day before today in ``timezone``."""
    current = (now or datetime.now(UTC)).astimezone(pytz.timezone(timezone))
    return current.date() - timedelta(days=1)
