"""What every throwaway server of the test kit shares (PostgreSQL, Redis, nginx): a temporary
directory of its own, and ``with`` starting it and, on the way out, stopping it and deleting the
directory. A leaf module, so that ``postgres`` and ``servers`` both build on it without a cycle.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Self


class ThrowawayServer:
    """Subclasses set ``root`` (their temporary directory) and give ``start()`` and ``stop()``."""

    root: Path

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
