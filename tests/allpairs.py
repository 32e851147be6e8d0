"""All-pairs (pairwise) coverage: which pairs of factor values a set of rows exercises, and a
small greedy generator of rows that cover the rest. Generic: tests/helpers.py applies it to
the template's answers (PAIR_FACTORS, PAIR_CASES)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

Pair = tuple[tuple[str, str], tuple[str, str]]


def pairs_of(row: Mapping[str, str]) -> set[Pair]:
    """Every pair of (factor, value) that one row exercises."""
    return set(itertools.combinations(sorted(row.items()), 2))


def pairs_of_factors(factors: Mapping[str, Sequence[str]]) -> set[Pair]:
    """Every pair of values of two different factors: what all-pairs coverage means."""
    names = sorted(factors)
    return {
        ((a, va), (b, vb))
        for a, b in itertools.combinations(names, 2)
        for va in factors[a]
        for vb in factors[b]
    }


def missing_pairs(
    rows: Iterable[Mapping[str, str]], factors: Mapping[str, Sequence[str]]
) -> list[Pair]:
    """The pairs of factor values that no row exercises (empty: all-pairs coverage)."""
    wanted = pairs_of_factors(factors)
    for row in rows:
        wanted -= pairs_of({factor: row[factor] for factor in factors})
    return sorted(wanted)


def greedy_pairs(factors: Mapping[str, Sequence[str]], covered: set[Pair]) -> list[dict[str, str]]:
    """Rows of factor values that, with ``covered``, exercise every pair (greedy, deterministic).

    Each row starts from the first uncovered pair and gives every other factor the value that
    covers the most uncovered pairs with the values chosen so far (ties: the first value).
    """
    uncovered = pairs_of_factors(factors) - covered
    rows: list[dict[str, str]] = []
    while uncovered:
        (a, va), (b, vb) = min(uncovered)
        row = {a: va, b: vb}
        for factor, values in factors.items():
            if factor not in row:
                gains = [len(pairs_of({**row, factor: value}) & uncovered) for value in values]
                row[factor] = values[gains.index(max(gains))]
        uncovered -= pairs_of(row)
        rows.append(row)
    return rows
