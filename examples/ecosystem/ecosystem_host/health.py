"""Per-bot liveness for the host image's HEALTHCHECK (``python -m ecosystem_host --check``).

The host writes ``state.json`` in its health directory (``HOST_HEALTH_DIR``, default
``/tmp/ecosystem-host``) whenever a bot's state changes; each child touches
``<slug>.alive`` there while its bot polls Telegram (the bot's own ``HEALTH_FILE`` mechanism).
The check is healthy only while the host runs and every bot it was asked to run has a live
child whose liveness file is fresh. Standard library only: it starts fast.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path("/tmp/ecosystem-host")
DIR_VARIABLE = "HOST_HEALTH_DIR"
# As the single-bot check: four missed 30-second touches.
MAX_AGE_SECONDS = 120.0


def health_dir(environ: Mapping[str, str] | None = None) -> Path:
    raw = (os.environ if environ is None else environ).get(DIR_VARIABLE, "").strip()
    return Path(raw) if raw else DEFAULT_DIR


def liveness_file(directory: Path, slug: str) -> Path:
    return directory / f"{slug}.alive"


def write_state(directory: Path, host_pid: int, bots: Mapping[str, Mapping[str, Any]]) -> None:
    """Atomically replace the state file (the check never reads half of one)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "state.json"
    temporary = target.with_suffix(f".{host_pid}.tmp")
    temporary.write_text(json.dumps({"host_pid": host_pid, "bots": bots}), encoding="utf-8")
    temporary.replace(target)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def problems(directory: Path, *, now: float | None = None) -> list[str]:
    """One line per bot that is not alive and polling; empty when healthy."""
    try:
        state = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{directory / 'state.json'} does not exist: the host has not started"]
    except (OSError, ValueError) as error:
        return [f"cannot read the host state: {error}"]
    if not _alive(state.get("host_pid")):
        return ["the host process is not running"]
    now = time.time() if now is None else now
    found = []
    for slug, bot in sorted(state.get("bots", {}).items()):
        status = bot.get("status")
        if status != "running" or not _alive(bot.get("pid")):
            found.append(
                f"{slug}: {status or 'unknown'}{': ' + bot['reason'] if bot.get('reason') else ''}"
            )
            continue
        try:
            age = now - liveness_file(directory, slug).stat().st_mtime
        except OSError:
            found.append(f"{slug}: not polling yet (no liveness file)")
            continue
        if age > MAX_AGE_SECONDS:
            found.append(f"{slug}: stopped polling ({age:.0f}s since the last sign of life)")
    if not state.get("bots"):
        found.append("the host runs no bot")
    return found


def main(argv: Sequence[str] = ()) -> int:
    del argv
    directory = health_dir()
    found = problems(directory)
    if found:
        print("unhealthy: " + "; ".join(found))
        return 1
    print("healthy: every bot is alive and polling")
    return 0
