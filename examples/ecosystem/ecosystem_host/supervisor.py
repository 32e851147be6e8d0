"""The parent after the preload: fork a child per bot, label its output, restart it, stop all.

A single-threaded loop on ``selectors`` (no asyncio in the parent: nothing of an event loop may
be inherited by a fork). Signals reach it through ``signal.set_wakeup_fd``.

- A child that exits (crash, ``kill -9``) is forked again after a delay that starts at
  ``FIRST_DELAY`` and doubles up to ``MAX_DELAY``; a child that ran ``HEALTHY_SECONDS`` resets it.
- A child that exits with status 2 after printing ``Configuration error: ...`` (what the bots'
  ``load_settings`` does) is reported once and started again only when its ``.env`` changes.
- SIGTERM/SIGINT go to every child; each stops cleanly (its analytics flushed); children still
  running after ``HOST_STOP_SECONDS`` (default 25, inside compose's 30 s grace) are killed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecosystem_host.bots import Bot
from ecosystem_host.child import child_environment, run_child, set_process_title
from ecosystem_host.health import liveness_file, write_state

logger = logging.getLogger("ecosystem_host")

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
HEALTHY_SECONDS = 60.0
DEFAULT_STOP_SECONDS = 25.0
CONFIG_EXIT = 2  # SystemExit(2) of ecosystem_shared.config.load_settings
CONFIG_MARK = b"Configuration error:"
TICK = 0.25


@dataclass
class Child:
    bot: Bot
    env: dict[str, str]
    pid: int | None = None
    started: float = 0.0  # time.time() of the fork
    status: str = "starting"  # starting, running, backoff, config-error, stopped
    reason: str = ""
    delay: float = FIRST_DELAY
    restart_at: float | None = None
    starts: int = 0
    config_lines: list[str] = field(default_factory=list)
    env_mtime: float | None = None

    def state(self) -> dict[str, Any]:
        return {"status": self.status, "pid": self.pid, "reason": self.reason}


@dataclass
class Stream:
    """One child's output pipe (kept until EOF: a grandchild may still hold it)."""

    child: Child
    pending: bytes = b""


def _env_mtime(bot: Bot) -> float | None:
    try:
        return bot.env_file.stat().st_mtime
    except OSError:
        return None


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(signum).name}"
        return f"killed by signal {signum}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    def __init__(
        self,
        bots: Sequence[Bot],
        health: Path,
        host_env: Mapping[str, str],
        stop_seconds: float = DEFAULT_STOP_SECONDS,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        self.health = health
        self.stop_seconds = stop_seconds
        self.children: list[Child] = []
        self.refused: dict[str, str] = {}
        for bot in bots:
            port = (ports or {}).get(bot.slug)
            metrics = (bot.slug, port) if port else None
            env, warnings = child_environment(host_env, liveness_file(health, bot.slug), metrics)
            for warning in warnings:
                logger.warning("%s", warning)
            self.children.append(Child(bot, env))
        self.selector = selectors.DefaultSelector()
        self.streams: dict[int, Stream] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.stopping = False
        self.stop_deadline = 0.0
        self.unclean: list[str] = []
        self.out = sys.stdout.buffer
        self.pid = os.getpid()

    # ------------------------------------------------------------------ output
    def _emit(self, label: str, data: bytes) -> None:
        self.out.write(b"[" + label.encode() + b"] " + data)

    def _read(self, fd: int) -> None:
        stream = self.streams[fd]
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno == errno.EINTR:
                    continue
                chunk = b""
            if not chunk:
                self._close_stream(fd)
                break
            lines = (stream.pending + chunk).split(b"\n")
            stream.pending = lines.pop()
            for line in lines:
                if line.startswith(CONFIG_MARK):
                    text = line[len(CONFIG_MARK) :].decode("utf-8", "replace").strip()
                    stream.child.config_lines.append(text)
                self._emit(stream.child.bot.slug, line + b"\n")
        self.out.flush()

    def _close_stream(self, fd: int) -> None:
        stream = self.streams.pop(fd)
        if stream.pending:
            self._emit(stream.child.bot.slug, stream.pending + b"\n")
        self.selector.unregister(fd)
        os.close(fd)

    # ------------------------------------------------------------------ children
    def _fork(self, child: Child) -> None:
        liveness = liveness_file(self.health, child.bot.slug)
        with contextlib.suppress(FileNotFoundError):
            liveness.unlink()
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: drop everything of the parent's loop, then become the bot
            os.close(read_fd)
            self.selector.close()
            self._wake_r.close()
            self._wake_w.close()
            for fd in self.streams:
                with contextlib.suppress(OSError):
                    os.close(fd)
            run_child(child.bot, child.env, write_fd, self.pid)
        os.close(write_fd)
        fcntl.fcntl(read_fd, fcntl.F_SETFL, fcntl.fcntl(read_fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.streams[read_fd] = Stream(child)
        self.selector.register(read_fd, selectors.EVENT_READ)
        child.pid, child.started, child.status, child.reason = pid, time.time(), "starting", ""
        child.starts += 1
        child.restart_at = None
        child.config_lines = []
        self._save()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children if c.pid == pid), None)
            if child is not None:
                self._exited(child, status)

    def _exited(self, child: Child, status: int) -> None:
        for fd, stream in list(self.streams.items()):
            if stream.child is child:
                self._read(fd)  # everything it printed before exiting, config errors included
        child.pid = None
        ran = time.time() - child.started
        how = _describe_exit(status)
        slug = child.bot.slug
        if self.stopping:
            child.status, child.reason = "stopped", how
            if how != "exited with status 0":
                self.unclean.append(slug)
            logger.info("%s: stopped (%s)", slug, how)
        elif os.WIFEXITED(status) and os.WEXITSTATUS(status) == CONFIG_EXIT and child.config_lines:
            child.status = "config-error"
            child.reason = "; ".join(child.config_lines)
            child.env_mtime = _env_mtime(child.bot)
            logger.error(
                "%s: configuration error in %s: %s; not restarted until that file changes",
                slug,
                child.bot.env_file,
                child.reason,
            )
        else:
            if ran >= HEALTHY_SECONDS:
                child.delay = FIRST_DELAY
            child.status, child.reason = "backoff", how
            child.restart_at = time.monotonic() + child.delay
            logger.warning("%s: %s after %.1f s; restarting in %.0f s", slug, how, ran, child.delay)
            child.delay = min(child.delay * 2, MAX_DELAY)
        self._save()

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.status == "starting" and child.pid is not None:
                try:
                    touched = liveness_file(self.health, child.bot.slug).stat().st_mtime
                except OSError:
                    continue
                if touched >= child.started - 1:
                    child.status = "running"
                    logger.info(
                        "%s: polling (pid %d, %.1f s after %s)",
                        child.bot.slug,
                        child.pid,
                        time.time() - child.started,
                        "start" if child.starts == 1 else f"restart {child.starts - 1}",
                    )
                    self._save()
            elif child.status == "backoff" and child.restart_at is not None:
                if now >= child.restart_at:
                    self._fork(child)
            elif child.status == "config-error" and _env_mtime(child.bot) != child.env_mtime:
                logger.info("%s: %s changed, starting again", child.bot.slug, child.bot.env_file)
                self._fork(child)

    def _save(self) -> None:
        bots = {c.bot.slug: c.state() for c in self.children}
        bots |= {
            slug: {"status": "refused", "pid": None, "reason": r}
            for slug, r in self.refused.items()
        }
        with contextlib.suppress(OSError):
            write_state(self.health, self.pid, bots)

    # ------------------------------------------------------------------ signals and loop
    def _on_signal(self, signum: int, frame: object) -> None:
        del frame
        if signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + self.stop_seconds

    def _begin_stop(self) -> None:
        logger.info("stopping every bot (SIGTERM to each child)")
        for child in self.children:
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
            elif child.status in ("backoff", "config-error", "starting"):
                child.status = "stopped"

    def run(self) -> int:
        set_process_title("ecosystem-host")
        self.selector.register(self._wake_r, selectors.EVENT_READ)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self._save()
        for child in self.children:
            self._fork(child)
        stop_sent = False
        while True:
            if self.stopping and not stop_sent:
                self._begin_stop()
                stop_sent = True
            if stop_sent and all(c.pid is None for c in self.children):
                break
            if stop_sent and time.monotonic() > self.stop_deadline:
                self._kill_remaining()
                break
            for key, _ in self.selector.select(TICK):
                if key.fileobj is self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while self._wake_r.recv(4096):
                            pass
                elif isinstance(key.fileobj, int) and key.fileobj in self.streams:
                    self._read(key.fileobj)
            self._reap()
            if not self.stopping:
                self._tick()
                if all(c.status == "config-error" for c in self.children):
                    logger.error("no bot could start: every bot has a configuration error")
                    return 2
        for fd in list(self.streams):
            self._read(fd)
        if self.unclean:
            logger.error("stopped; not cleanly: %s", ", ".join(self.unclean))
        else:
            logger.info("stopped cleanly")
        self.out.flush()
        return 1 if self.unclean else 0

    def _kill_remaining(self) -> None:
        for child in self.children:
            if child.pid is not None:
                logger.error(
                    "%s: still running %.0f s after SIGTERM; killed",
                    child.bot.slug,
                    self.stop_seconds,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(child.pid, 0)
                child.pid, child.status, child.reason = None, "stopped", "killed"
                self.unclean.append(child.bot.slug)
