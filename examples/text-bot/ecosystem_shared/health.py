"""Liveness for the Docker HEALTHCHECK: the bot touches a file, the check reads its age.

The runtime calls :func:`touch_liveness` every 30 s while Telegram answers its long polls; the
image's ``HEALTHCHECK CMD python -m ecosystem_shared.health`` exits 0 while the file is fresh
and 1 with a one-line reason otherwise (Docker shows that line in ``docker inspect``). A file
rather than an HTTP port: a polling bot listens on nothing, and a file works with a read-only
root filesystem (``/tmp`` is a tmpfs). In webhook mode (``RUN_MODE=webhook`` in the
environment) the check also asks the bot's own server for ``/healthz``: a replica counts as
healthy only once it accepts updates, which is what a rolling update (start-first) waits for
before it stops an old replica. Standard library only, so the check starts fast and never needs
settings.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "DEFAULT_HEALTH_FILE",
    "DEFAULT_MAX_AGE_SECONDS",
    "WEBHOOK_HEALTH_PATH",
    "check_liveness",
    "check_webhook",
    "main",
    "touch_liveness",
]

# The image's /tmp is the container's own tmpfs (compose.yaml: read_only root, `tmpfs: /tmp`),
# written by the bot's user alone. Elsewhere (a shared machine) touch_liveness refuses a symlink
# or a file of another user planted at this fixed name, so the name is no foothold (bandit B108).
DEFAULT_HEALTH_FILE = Path("/tmp/bot-alive")  # nosec B108
# Four missed 30-second touches: one slow getUpdates round or a GC pause is not an outage.
DEFAULT_MAX_AGE_SECONDS = 120.0
# Served by ecosystem_shared.webhook in webhook mode.
WEBHOOK_HEALTH_PATH = "/healthz"
WEBHOOK_TIMEOUT_SECONDS = 5.0
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # nosec B104: names of "every interface"

logger = logging.getLogger(__name__)
_warned: set[Path] = set()


def touch_liveness(path: Path | str) -> bool:
    """Set the file's modification time to now (creating it); never raises.

    Returns False when the file cannot be written; that is logged once per path, and the
    health check then reports the container unhealthy, which is the useful signal.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Never through a symlink (ELOOP), never another user's file: at a fixed name in a
        # shared directory either would let someone else choose what the bot writes.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            owner = os.fstat(fd).st_uid
            if owner != os.geteuid():
                raise PermissionError(f"owned by uid {owner}, not by this process")
            os.utime(fd)  # an existing file gets its mtime set to now
        finally:
            os.close(fd)
    except OSError as error:
        if target not in _warned:
            _warned.add(target)
            logger.warning("Cannot write the liveness file %s: %s", target, error)
        return False
    _warned.discard(target)
    return True


def check_liveness(path: Path, max_age: float, *, now: float | None = None) -> str | None:
    """``None`` when ``path`` was modified within ``max_age`` seconds, else why not."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: the bot has not started polling (or HEALTH_FILE differs)"
    except OSError as error:
        return f"cannot read {path}: {error.strerror or error}"
    age = (time.time() if now is None else now) - modified
    if age > max_age:
        return f"{path} is {age:.0f}s old (limit {max_age:g}s): the bot stopped polling"
    return None


def check_webhook(url: str, timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> str | None:
    """``None`` when the bot's webhook server answers ``url`` with 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec B310: http only
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        return f"the webhook server does not answer {url}: {reason}"
    if status != 200:
        return f"the webhook server answered {status} on {url}"
    return None


def _webhook_url(environ: Mapping[str, str]) -> str | None:
    """The bot's own health URL in webhook mode, from the variables the bot reads too."""
    if environ.get("RUN_MODE", "").strip() != "webhook":
        return None
    raw_port = environ.get("WEBHOOK_LISTEN_PORT", "").strip() or "8080"
    if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
        raise ValueError(f"WEBHOOK_LISTEN_PORT must be a port number (got {raw_port!r})")
    host = environ.get("WEBHOOK_LISTEN_HOST", "").strip()
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{raw_port}{WEBHOOK_HEALTH_PATH}"


def _settings(environ: Mapping[str, str]) -> tuple[Path, float]:
    raw_path = environ.get("HEALTH_FILE", "").strip()
    path = Path(raw_path) if raw_path else DEFAULT_HEALTH_FILE
    raw_age = environ.get("HEALTH_MAX_AGE", "").strip()
    if not raw_age:
        return path, DEFAULT_MAX_AGE_SECONDS
    try:
        max_age = float(raw_age)
    except ValueError:
        raise ValueError(f"HEALTH_MAX_AGE must be a number of seconds (got {raw_age!r})") from None
    if not max_age > 0:
        raise ValueError(f"HEALTH_MAX_AGE must be positive (got {raw_age!r})")
    return path, max_age


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Exit code for the health check: 0 healthy, 1 unhealthy (one line on stdout either way)."""
    del argv  # no options: everything comes from the environment the bot also reads
    variables = os.environ if environ is None else environ
    try:
        path, max_age = _settings(variables)
        webhook = _webhook_url(variables)
    except ValueError as error:
        print(f"unhealthy: {error}")
        return 1
    reason = check_liveness(path, max_age)
    if reason is None and webhook is not None:
        reason = check_webhook(webhook)
    if reason is not None:
        print(f"unhealthy: {reason}")
        return 1
    served = f"; {webhook} answers" if webhook else ""
    print(f"healthy: {path} touched within {max_age:g}s{served}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
