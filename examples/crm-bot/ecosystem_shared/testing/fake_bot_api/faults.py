"""Faults a test injects: errors and delays for the next calls, the API going away."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ecosystem_shared.testing.fake_bot_api.fields import ApiError


@dataclass
class Fault:
    method: str  # lower-case method name or "*"
    times: int
    error: ApiError | None = None
    delay: float = 0.0


class Faults:
    """Fault injection of a :class:`FakeBotAPI` (part of the server)."""

    _faults: list[Fault]
    _unreachable: int | bool  # True: connections dropped; a status: answered with it
    _wakeup: asyncio.Event

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        retry_after: int = 1,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` ("*" = any method) fail with this error."""
        error = ApiError(error_code, description, retry_after if error_code == 429 else None)
        self._faults.append(Fault(method.lower(), times, error=error))

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` are answered ``seconds`` late (timeouts)."""
        self._faults.append(Fault(method.lower(), times, delay=seconds))

    def set_unreachable(self, unreachable: bool = True, *, status: int | None = None) -> None:
        """The API goes away: every connection is dropped, or answered with ``status`` (502)."""
        self._unreachable = status if unreachable and status else unreachable
        self._wakeup.set()  # pending long polls fail too

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self._faults:
            if fault.method in ("*", method.lower()):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None
