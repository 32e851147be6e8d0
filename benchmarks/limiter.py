"""Memory of the rate limiter at a million distinct users (limiter_memory.py in a process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from typing import Any

from benchmarks.config import BENCH_DIR, Config
from benchmarks.rendered_bot import RenderedBot


async def limiter_memory(rendered: RenderedBot, config: Config) -> dict[str, Any]:
    interval = float(rendered.settings.Settings.model_fields["RATE_LIMIT_SECONDS"].default)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(rendered.bot_dir), env.get("PYTHONPATH")])
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH_DIR / "limiter_memory.py"),
        str(config.limiter_users),
        str(interval),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 600)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"limiter_memory.py failed ({process.returncode}):\n{stderr.decode()}")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result
