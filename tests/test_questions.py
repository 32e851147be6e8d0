"""copier.yml's questions: bad answers are refused with a message, defaults are usable.

A validator's message is what a user sees at the prompt; `run_copy` with the same answer as data
raises ValueError carrying that message, so these tests check the text a user would read.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit.render import copy_template
from tests.helpers import REPO_ROOT, recorded_answers, render

PUBLIC_BOT_KEYS = {
    "project_type",
    "bot_name",
    "bot_slug",
    "package_name",
    "description",
    "author",
    "mode",
    "local_bot_api",
    "crm",
    "external_api",
    "language",
    "python_version",
    "digest_time",
    "digest_timezone",
    "rate_limit_seconds",
}


def _load_extension() -> ModuleType:
    """extensions/bot_template.py: the Jinja helpers copier.yml derives defaults with."""
    path = REPO_ROOT / "extensions/bot_template.py"
    spec = importlib.util.spec_from_file_location("bot_template_extension", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


extension = _load_extension()


def copy_error(tmp_path: Path, **answers: Any) -> str:
    """The message copier refuses `answers` with (fails the test when it accepts them)."""
    dst = tmp_path / "refused"
    with pytest.raises(ValueError) as excinfo:
        copy_template(dst, answers, pretend=True)
    assert not dst.exists(), "a refused answer must not leave files behind"
    return str(excinfo.value)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"bot_name": ""}, "bot_name must not be empty"),
        ({"bot_name": "   "}, "bot_name must not be empty"),
        ({"bot_name": " Picture Bot"}, "must not start or end with spaces"),
        ({"bot_name": "x" * 65}, "at most 64 characters"),
        ({"bot_slug": "Bad Slug"}, "bot_slug must be lowercase Latin letters"),
        ({"bot_slug": "-x"}, "bot_slug must be lowercase Latin letters"),
        ({"bot_slug": "x--y"}, "single dashes"),
        ({"bot_slug": "7bot"}, "starting with a letter"),
        ({"package_name": "class"}, "would shadow"),
        ({"package_name": "json"}, "would shadow"),
        ({"package_name": "aiogram"}, "would shadow"),
        ({"package_name": "ecosystem_shared"}, "would shadow"),
        ({"package_name": "1abc"}, "lowercase Python identifier"),
        ({"package_name": "My-Bot"}, "lowercase Python identifier"),
        ({"digest_time": "25:00"}, "digest_time must be HH:MM"),
        ({"digest_time": "9:5"}, "digest_time must be HH:MM"),
        ({"digest_time": "12:60"}, "digest_time must be HH:MM"),
        ({"digest_timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"rate_limit_seconds": 0}, "rate_limit_seconds must be greater than 0"),
        ({"rate_limit_seconds": -1}, "rate_limit_seconds must be greater than 0"),
        ({"rate_limit_seconds": 3601}, "at most 3600"),
        ({"mode": "video"}, "'video' is not in"),
        ({"language": "de"}, "'de' is not in"),
        ({"project_type": "ecosystem", "bots": " , "}, "bots must name at least one"),
        ({"project_type": "ecosystem", "bots": "a-bot,Bad_Bot"}, "bad: Bad_Bot"),
        ({"project_type": "ecosystem", "bots": "a-bot,a-bot"}, "must not repeat"),
        ({"project_type": "ecosystem", "ecosystem_name": "My Eco"}, "ecosystem_name must be"),
        ({"project_type": "ecosystem", "backup_retention_days": 0}, "between 1 and 3650"),
        ({"project_type": "ecosystem", "webhook_domain": "https://x.org"}, "webhook_domain must"),
        ({"project_type": "ecosystem", "webhook_domain": "Bots.Example.com"}, "a lowercase DNS"),
    ],
    ids=lambda value: repr(value) if isinstance(value, dict) else None,
)
def test_bad_answer_is_refused_with_the_rule(
    tmp_path: Path, answers: dict[str, Any], expected: str
) -> None:
    message = copy_error(tmp_path, **answers)
    assert expected in message
    question = next(key for key in answers if key != "project_type")
    assert question in message, "the message must name the question"


def test_non_numeric_rate_limit_is_refused(tmp_path: Path) -> None:
    """copier casts `type: float` before the validator runs, so its own message shows."""
    message = copy_error(tmp_path, rate_limit_seconds="abc")
    assert "'abc'" in message
    assert "float" in message or "rate_limit_seconds" in message


@pytest.mark.parametrize(
    "answers",
    [
        {"rate_limit_seconds": 0.5},
        {"rate_limit_seconds": 3600},
        {"digest_time": "23:59", "digest_timezone": "UTC"},
        {"digest_time": "09:30", "digest_timezone": "Asia/Yekaterinburg"},
        {"bot_slug": "a1-b2", "package_name": "a1_b2"},
        {"package_name": "json_bot"},
    ],
)
def test_good_edge_answers_are_accepted(tmp_path: Path, answers: dict[str, Any]) -> None:
    project = render(tmp_path, **answers)
    recorded = recorded_answers(project)
    for key, value in answers.items():
        assert recorded[key] == value


@pytest.mark.parametrize(
    ("bot_name", "slug", "package"),
    [
        ("Бот Картинок", "bot-kartinok", "bot_kartinok"),
        ("Picture Bot", "picture-bot", "picture_bot"),
        ("Mr. Bot's #1 (beta)!", "mr-bot-s-1-beta", "mr_bot_s_1_beta"),
    ],
)
def test_slug_and_package_default_from_the_name(
    tmp_path: Path, bot_name: str, slug: str, package: str
) -> None:
    recorded = recorded_answers(render(tmp_path, bot_name=bot_name))
    assert recorded["bot_slug"] == slug
    assert recorded["package_name"] == package
    assert recorded["bot_name"] == bot_name
    assert bot_name in str(recorded["description"])


def test_name_starting_with_a_digit_gets_a_slug_starting_with_a_letter(tmp_path: Path) -> None:
    recorded = recorded_answers(render(tmp_path, bot_name="7 Wonders Bot"))
    slug, package = str(recorded["bot_slug"]), str(recorded["package_name"])
    assert re.fullmatch(extension.SLUG_PATTERN, slug), slug
    assert "7-wonders-bot" in slug
    assert package.isidentifier()
    assert package[0].isalpha()


@given(st.text(max_size=64))
@settings(max_examples=300, deadline=None)
def test_any_name_derives_valid_slug_and_package(bot_name: str) -> None:
    """Whatever the name, the derived defaults pass the validators (no prompt dead end)."""
    slug = extension.slugify(bot_name)
    assert re.fullmatch(extension.SLUG_PATTERN, slug), slug
    package = extension.package_from_slug(slug)
    assert extension.package_name_error(package) == "", package


def test_defaults_agree_with_each_other_and_the_readme() -> None:
    """`copier copy --defaults` makes a text bot, so its default name names no other kind of bot;
    the ecosystem's default `bots` is that bot's directory; README.md's table says the same."""
    questions = yaml.safe_load((REPO_ROOT / "copier.yml").read_text(encoding="utf-8"))
    name = questions["bot_name"]["default"]
    assert questions["mode"]["default"] == "text"
    kinds = ("picture", "media", "photo", "video", "crm", "order", "api")
    assert not [kind for kind in kinds if kind in name.lower()], f"{name!r} names another kind"
    assert questions["bots"]["default"] == extension.slugify(name)
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"| `bot_name` | {name} |" in readme
    assert "| `mode` | `text` |" in readme


@pytest.mark.parametrize(("mode", "expected"), [("media", True), ("text", False)])
def test_local_bot_api_defaults_to_the_mode(tmp_path: Path, mode: str, expected: bool) -> None:
    recorded = recorded_answers(render(tmp_path, mode=mode))
    assert recorded["local_bot_api"] is expected


def test_answers_file_records_the_commit_and_every_question(tmp_path: Path) -> None:
    recorded = recorded_answers(render(tmp_path))
    assert recorded.get("_commit"), "_commit missing: `copier update` could not find the base"
    assert recorded.get("_src_path")
    questions = yaml.safe_load((REPO_ROOT / "copier.yml").read_text(encoding="utf-8"))
    bot_questions = {
        key
        for key, spec in questions.items()
        if not key.startswith("_") and "ecosystem" not in str(spec.get("when", ""))
    }
    assert bot_questions >= PUBLIC_BOT_KEYS, "copier.yml lost a documented question"
    missing = sorted(bot_questions - set(recorded))
    assert not missing, f"answers not recorded: {missing}"
    assert not [key for key in recorded if key in {"ecosystem_name", "bots"}], (
        "ecosystem answers leaked into a bot's answers file"
    )
