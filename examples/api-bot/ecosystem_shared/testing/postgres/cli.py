"""``python -m ecosystem_shared.testing.postgres -- <command>`` (see ``__main__.py``)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ecosystem_shared.testing.postgres.server import PostgresServer


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ecosystem_shared.testing.postgres [options] -- command ...``:
    run ``command`` with ``TEST_DATABASE_URL`` set to a throwaway server, stopped afterwards
    (also when this process gets SIGTERM: the command is terminated first)."""
    parser = argparse.ArgumentParser(prog="python -m ecosystem_shared.testing.postgres")
    parser.add_argument("--max-connections", type=int, default=200)
    parser.add_argument("--bin-dir", type=Path, help="initdb/pg_ctl directory (found otherwise)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    def terminated(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    server = PostgresServer(args.bin_dir, max_connections=args.max_connections)
    child: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        print(f"PostgreSQL on {server.url} ({server.bin_dir})", file=sys.stderr, flush=True)
        child = subprocess.Popen(command, env={**os.environ, "TEST_DATABASE_URL": server.url})
        return child.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait()
        server.cleanup()
