"""What a forked child does: become ``python -m <package_name>`` run inside its bot directory.

Settings precedence in a child (pydantic-settings: process environment over ``.env``):

1. ``HEALTH_FILE`` (set by the host, one file per bot), with ``HOST_METRICS_PORT`` set the
   metrics address (``METRICS_PORT``: that port plus the bot's position among the host's
   arguments, ``METRICS_HOST=0.0.0.0``, ``BOT_SLUG``), and every ``ALL_BOTS_<NAME>`` variable of
   the host's environment as ``<NAME>`` (e.g. ``ALL_BOTS_DATABASE_URL``: one database for all);
2. the bot's own ``.env``;
3. the defaults of the bot's ``Settings``.

Nothing else of the host's environment reaches a child except process plumbing (``PATH``,
locale, ``HOME``, ``TZ``, proxies, CA bundles, ``PYTHON*``), so a ``BOT_TOKEN`` (or any other
setting) exported to the host can never become another bot's setting.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import runpy
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from ecosystem_host.bots import Bot

SHARED_PREFIX = "ALL_BOTS_"
# Set by the host for each bot; a bot's .env cannot change them.
HOST_SET = frozenset({"HEALTH_FILE", "METRICS_PORT", "METRICS_HOST", "BOT_SLUG"})
# Never accepted from ALL_BOTS_: a token belongs to one bot.
NOT_SHARED = frozenset({"BOT_TOKEN"})
_PLUMBING = frozenset(
    (
        *("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR", "TERM"),
        *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "MPLCONFIGDIR", "VIRTUAL_ENV"),
        *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"),
    )
)
_PLUMBING_PREFIXES = ("LC_", "PYTHON", "XDG_")
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1


def child_environment(
    host_env: Mapping[str, str], health_file: Path, metrics: tuple[str, int] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The environment a bot child starts with, and warnings about ignored variables.

    ``metrics``: the bot's slug and its own metrics port (every child of the container needs
    another port; Prometheus scrapes each with the bot's label)."""
    env = {
        name: value
        for name, value in host_env.items()
        if name in _PLUMBING or name.startswith(_PLUMBING_PREFIXES)
    }
    # PYTHONPATH would put the host's idea of the import path before the bot's own directory.
    env.pop("PYTHONPATH", None)
    warnings = []
    for name, value in host_env.items():
        if not name.startswith(SHARED_PREFIX):
            continue
        target = name.removeprefix(SHARED_PREFIX)
        if target in NOT_SHARED or target in HOST_SET or not target:
            warnings.append(f"{name} ignored: {target or 'an empty name'} is not shared by bots")
            continue
        env[target] = value
    env["HEALTH_FILE"] = str(health_file)
    if metrics is not None:
        env["BOT_SLUG"], port = metrics
        env.update(METRICS_PORT=str(port), METRICS_HOST="0.0.0.0")  # nosec B104: the container
    return env, warnings


def metrics_ports(host_env: Mapping[str, str], slugs: Sequence[str]) -> dict[str, int]:
    """``HOST_METRICS_PORT`` + position of each bot in ``slugs`` (the host's arguments, in the
    order of the ecosystem's ``bots`` answer, which the scrape configuration follows); {} when
    ``HOST_METRICS_PORT`` is unset or 0."""
    raw = host_env.get("HOST_METRICS_PORT", "").strip()
    if not raw or raw == "0":
        return {}
    if not raw.isdigit() or not 1 <= int(raw) <= 65535 - len(slugs) + 1:
        raise ValueError(
            f"HOST_METRICS_PORT must be a port number, 1-{65535 - len(slugs) + 1} for"
            f" {len(slugs)} bots (got {raw!r})"
        )
    return {slug: int(raw) + index for index, slug in enumerate(slugs)}


def set_process_title(title: str) -> None:
    """``ps``/``top`` show the bot: setproctitle when installed, else the kernel's comm name."""
    try:
        import setproctitle  # type: ignore[import-not-found,unused-ignore]

        setproctitle.setproctitle(title)
        return
    except ImportError:
        pass
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        # 15 bytes plus NUL: /proc/PID/comm, what `ps -o comm`, top and htop show by default.
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(title.encode()[:15]), 0, 0, 0)


def _die_with_parent() -> None:
    """SIGTERM this child if the host dies (even by SIGKILL), so no bot polls unsupervised."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def run_child(bot: Bot, env: Mapping[str, str], output_fd: int, host_pid: int) -> NoReturn:
    """Run the bot in this (freshly forked) process; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own process group: a terminal's Ctrl-C goes to the host only
        _die_with_parent()
        if os.getppid() != host_pid:  # the host died before prctl took effect
            os._exit(1)
        for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.set_wakeup_fd(-1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        os.environ.clear()
        os.environ.update(env)
        os.chdir(bot.directory)
        # As `python -m <package>` run from the bot directory: that directory first on the path.
        sys.path[0:1] = [str(bot.directory)]
        set_process_title(f"bot:{bot.slug}")
        sys.argv = [str(bot.directory / bot.package / "__main__.py")]
        gc.enable()
        runpy.run_module(bot.package, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - reported, then the exit code tells the host
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
    os._exit(code)  # never the parent's atexit handlers or buffered files
