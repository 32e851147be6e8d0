"""Waits between attempts: aiogram's ``Backoff``, configured one way for every retry loop."""

from __future__ import annotations

from aiogram.utils.backoff import Backoff, BackoffConfig


def retry_backoff(
    first_delay: float, max_delay: float, *, factor: float = 2.0, jitter: float = 0.0
) -> Backoff:
    """A fresh backoff for one retried call: ``next()`` is the wait before the next attempt.

    ``first_delay``, then ``factor`` times the previous wait, at most ``max_delay``; ``jitter``
    is the standard deviation (seconds) aiogram adds to each wait after the first, so that
    callers failing together do not retry together. Bad numbers raise ``ValueError`` at once
    (``max_delay`` must exceed ``first_delay``, ``factor`` must exceed 1).
    """
    return Backoff(
        BackoffConfig(min_delay=first_delay, max_delay=max_delay, factor=factor, jitter=jitter)
    )
