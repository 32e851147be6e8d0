"""Template tests (a package so that tests.helpers is importable)."""
