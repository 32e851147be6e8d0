"""The machine a run measured on, and readings of a process from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.config import MIB, REPO_ROOT


def run_text(*command: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_total() -> str:
    with contextlib.suppress(OSError, IndexError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / MIB / MIB:.1f} GiB"
    return "unknown"


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    commit = run_text("git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD")
    dirty = bool(run_text("git", "-C", str(REPO_ROOT), "status", "--porcelain"))
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory": memory_total(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiogram": version_of("aiogram"),
        "asyncpg": version_of("asyncpg"),
        "copier": version_of("copier"),
        "template_commit": commit + (" + uncommitted changes" if dirty else ""),
        "load_average_start": list(os.getloadavg()),
    }


def proc_status_kb(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settled_rss_kb(pid: int, timeout: float = 5.0) -> int:
    """VmRSS once three readings 0.25 s apart agree (or the last one after ``timeout``)."""
    deadline = time.monotonic() + timeout
    samples = [proc_status_kb(pid, "VmRSS")]
    while not (len(samples) >= 3 and len(set(samples[-3:])) == 1):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
        samples.append(proc_status_kb(pid, "VmRSS"))
    return samples[-1]
