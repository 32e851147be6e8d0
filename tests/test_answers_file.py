"""The one reader of `.copier-answers.yml` the ecosystem has (`ecosystem_host/answers.py`), used
by the host (`ecosystem_host/bots.py`) and by `update-bots`/`deploy-stack`: every answer copier
writes reads back as the text it was, long values folded onto several lines included."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jinja2_ansible_filters.core_filters import to_nice_yaml  # what copier writes answers with

from tests.helpers import REPO_ROOT

ECOSYSTEM_SOURCE = REPO_ROOT / "ecosystem"


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


answers = load("answers_under_test", ECOSYSTEM_SOURCE / "ecosystem_host" / "answers.py")
update_bots = load("update_bots_answers_under_test", ECOSYSTEM_SOURCE / "tools" / "update_bots.py")

KEYS = st.from_regex(r"_?[a-z][a-z0-9_]{0,20}", fullmatch=True)
# Any text but surrogates (not UTF-8) and YAML 1.1's other line breaks (answers.py's docstring):
# quotes, colons, '#', newlines, control characters, ...
TEXTS = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x85\u2028\u2029"), max_size=200
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, TEXTS, max_size=8))
@example({"bots": ", ".join(f"bot-number-{n}" for n in range(12))})  # folded at 80 columns
@example({"q": "it's: a 'test' # x", "e": "", "lead": " spaced ", "n": "a\nb\n\n\nc"})
@example({"bell": "a\x07b é " + "x" * 90, "bs": "back\\slash " * 10, "tab": "\t x \t"})
@example({"no": ""})  # found by Hypothesis: a key YAML would read as false is quoted
@example({"a": "0000000\x1f" + "\U00010000" * 6 + "\xa0"})  # found: NBSP after a fold is text
def test_every_answer_reads_back_as_written(written: dict[str, str]) -> None:
    assert answers.parse_answers(to_nice_yaml(written)) == written


def test_lists_and_mappings_are_left_out() -> None:
    text = to_nice_yaml({"a": "1", "items": ["x", "y: z"], "nested": {"k": "v"}, "z": "last"})
    assert answers.parse_answers(text) == {"a": "1", "z": "last"}


def test_a_missing_or_unreadable_file_has_no_answers(tmp_path: Path) -> None:
    assert answers.read_answers(tmp_path) == {}
    (tmp_path / ".copier-answers.yml").write_bytes(b"\xff\xfe not UTF-8")
    assert answers.read_answers(tmp_path) == {}


def test_update_bots_lists_every_bot_of_a_long_bots_answer(tmp_path: Path) -> None:
    """The `bots` answer of a big fleet is folded onto several lines; each bot is updated."""
    slugs = [f"shop-{n:02d}-bot" for n in range(20)]
    text = "# Changes here will be overwritten by Copier\n" + to_nice_yaml(
        {"_commit": "v0.2.0", "bots": ", ".join(slugs), "project_type": "ecosystem"}
    )
    (tmp_path / ".copier-answers.yml").write_text(text, encoding="utf-8")
    assert len(text.splitlines()) > 4  # folded indeed
    assert update_bots.listed_bots(tmp_path) == slugs
    assert update_bots.answer(tmp_path, "_commit") == "v0.2.0"
    assert update_bots.answer(tmp_path, "missing") is None


def test_update_outcomes_are_one_enum() -> None:
    result = update_bots.Result
    assert {r for r in result if r.fine} == {result.UPDATED, result.CURRENT, result.WOULD_UPDATE}
    assert result("already current") is result.CURRENT
    outcome = update_bots.Outcome(bot="a-bot", result=result.CHECKS_FAILED, detail="log: x")
    assert update_bots.table([outcome]).splitlines()[1].split()[:5] == [
        "a-bot", "?", "?", "checks", "failed"
    ]  # fmt: skip


@pytest.mark.parametrize("bad", ["not: [closed", "- a list at the top"])
def test_text_that_is_no_mapping_gives_what_it_can(bad: str) -> None:
    assert answers.parse_answers(bad) == ({"not": "[closed"} if ":" in bad else {})
