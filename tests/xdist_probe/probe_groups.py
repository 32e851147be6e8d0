"""Run only by tests/test_xdist_groups.py (the file name keeps it out of the normal run)."""

import pytest

pytestmark = pytest.mark.xdist_group("probe-module")


@pytest.mark.parametrize("n", range(6))
def test_module_group(n: int) -> None:
    assert n >= 0


@pytest.mark.xdist_group("probe-own")
@pytest.mark.parametrize("n", range(6))
def test_own_group(n: int) -> None:
    assert n >= 0
