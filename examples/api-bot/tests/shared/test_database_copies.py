"""The test kit's per-test databases: copies of the migrated template, made ahead and dropped
behind on background threads (ecosystem_shared/testing/postgres/copies.py)."""

import asyncpg
import pytest

from ecosystem_shared.testing.postgres import DatabaseCopies, run_sync
from ecosystem_shared.testing.waiting import fetch

PREFIX = "kitcheck"  # apart from the copies the other tests use, made at the same time


async def names_on(server: str) -> set[str]:
    query = "SELECT datname FROM pg_database WHERE datname LIKE $1"
    return {row["datname"] for row in await fetch(server, query, PREFIX + "%")}


async def test_copies_are_separate_migrated_and_all_dropped(
    postgres_url: str, migrated_template: str
) -> None:
    copies = DatabaseCopies(postgres_url, migrated_template, ahead=2, workers=2, prefix=PREFIX)
    try:
        urls = [copies.take() for _ in range(5)]  # more than are made ahead: takes wait
        assert len(set(urls)) == 5
        first, second = urls[:2]
        await fetch(
            first, "INSERT INTO shared.users (telegram_id, first_name) VALUES (1, 'only here')"
        )
        assert len(await fetch(first, "SELECT * FROM shared.users")) == 1
        assert await fetch(second, "SELECT * FROM shared.users") == [], "copies share rows"
        for url in urls:
            copies.give_back(url)
    finally:
        copies.close()
    assert await names_on(postgres_url) == set(), "a copy outlived close()"


async def test_a_copy_that_cannot_be_made_fails_the_taker(postgres_url: str) -> None:
    copies = DatabaseCopies(
        postgres_url, "no_such_template_database", ahead=1, workers=1, prefix=PREFIX
    )
    try:
        with pytest.raises(asyncpg.InvalidCatalogNameError, match="no_such_template_database"):
            copies.take()
        with pytest.raises(asyncpg.InvalidCatalogNameError):  # and every take after it
            copies.take()
    finally:
        copies.close()


def test_close_drops_what_was_made_ahead_and_never_taken(postgres_url: str) -> None:
    copies = DatabaseCopies(postgres_url, None, ahead=3, workers=1, prefix=PREFIX)
    copies.give_back(copies.take())
    assert run_sync(names_on(postgres_url)), "nothing made ahead"
    copies.close()
    assert run_sync(names_on(postgres_url)) == set()
