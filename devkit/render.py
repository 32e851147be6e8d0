"""Rendering this template: the one ``copier copy`` call of the tests, benchmarks and scripts."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from copier import run_copy
from copier.errors import DirtyLocalWarning, MissingSettingsWarning

REPO_ROOT = Path(__file__).resolve().parents[1]


def copy_template(
    dst: Path,
    answers: Mapping[str, Any],
    *,
    src: Path = REPO_ROOT,
    vcs_ref: str | None = "HEAD",
    **options: Any,
) -> Path:
    """`copier copy --trust --defaults` of ``src`` into ``dst``; returns ``dst``.

    By default the working tree of this repository, uncommitted changes included (that is the
    point: tests and benchmarks follow the edits); ``vcs_ref=None`` takes the newest tag.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DirtyLocalWarning)
        warnings.simplefilter("ignore", MissingSettingsWarning)
        run_copy(
            str(src),
            dst,
            data=dict(answers),
            defaults=True,
            unsafe=True,
            vcs_ref=vcs_ref,
            quiet=True,
            **options,
        )
    return dst
