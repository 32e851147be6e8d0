"""Shared components of every bot in the ecosystem (template-owned: see README.md here)."""
