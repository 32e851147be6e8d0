"""The benchmark of the generated bot (``python benchmarks/run.py``; see README.md)."""
