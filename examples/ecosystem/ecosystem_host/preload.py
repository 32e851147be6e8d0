"""Work done once in the parent so every forked bot shares it, right before the fork: the
bots' imports (``bot_imports``), a warm-up of the libraries' hot paths (``warmup``), then a
collected, immortal and frozen heap (``heap``).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable

from ecosystem_host.bot_imports import import_shared
from ecosystem_host.bots import Bot
from ecosystem_host.heap import (
    fill_pymalloc_holes,
    immortal_objects_unsupported,
    immortalise_heap,
    release_free_heap,
)
from ecosystem_host.warmup import warm_up

logger = logging.getLogger("ecosystem_host")


def preload(bots: Iterable[Bot], immortal: bool = True) -> None:
    """Imports, warm-up, then a collected, immortal (3.12+) and frozen heap: call right before
    forking. ``immortal=False`` (``HOST_IMMORTAL_OBJECTS=0``) keeps reference counting as is."""
    gc.disable()  # no collection half-way through building what the children will share
    bots = list(bots)
    imported, failed = import_shared(bots)
    skipped = warm_up()
    gc.collect()  # the warm-up's garbage goes; what it cached (regexes, schemas) stays
    if not immortal:
        immortals = "off (HOST_IMMORTAL_OBJECTS=0)"
    else:
        immortals = immortal_objects_unsupported() or str(immortalise_heap())
    filled = fill_pymalloc_holes()
    gc.freeze()
    release_free_heap()
    logger.info(
        "preloaded %d modules for %d bot(s); immortal objects: %s; %d heap holes filled%s%s",
        len(imported),
        len(bots),
        immortals,
        filled,
        f"; not importable here: {', '.join(failed)}" if failed else "",
        f"; warm-up skipped: {'; '.join(skipped)}" if skipped else "",
    )
