"""Run a command with ``TEST_DATABASE_URL`` pointing at a throwaway PostgreSQL (the test kit's
server, see testkit.py), stopped afterwards:

    python -m devkit.postgres [--bin-dir D] [--max-connections N] -- command ...
"""

from __future__ import annotations

from devkit.testkit import postgres

if __name__ == "__main__":
    raise SystemExit(postgres().main())
