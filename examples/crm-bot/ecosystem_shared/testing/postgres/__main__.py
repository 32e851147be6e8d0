"""``python -m ecosystem_shared.testing.postgres [options] -- command ...``."""

from ecosystem_shared.testing.postgres.cli import main

raise SystemExit(main())
