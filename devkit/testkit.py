"""The generated bots' test kit, imported from ``template/`` by path.

``template/ecosystem_shared`` is copied byte for byte into every bot (tests/test_render.py
checks it), so importing it from here runs exactly the code the bots' own tests run.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from devkit.render import REPO_ROOT

TEMPLATE_DIR = REPO_ROOT / "template"


def shared_module(name: str) -> ModuleType:
    """``ecosystem_shared.<name>`` from ``template/`` (e.g. ``testing.postgres``)."""
    if str(TEMPLATE_DIR) not in sys.path:
        sys.path.append(str(TEMPLATE_DIR))
    return importlib.import_module(f"ecosystem_shared.{name}")


def postgres() -> ModuleType:
    """``ecosystem_shared.testing.postgres``: throwaway servers, databases, admin statements."""
    return shared_module("testing.postgres")
