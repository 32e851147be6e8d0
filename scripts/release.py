"""Releases of this template: a CHANGELOG.md section ``## X.Y.Z (YYYY-MM-DD)`` and a tag ``vX.Y.Z``.

``python scripts/release.py 0.2.0`` moves everything under ``## Unreleased`` into a new dated
section (an empty ``## Unreleased`` stays above it), after checking that 0.2.0 is greater (PEP 440)
than every released version and that there is something to release. Commit the result on main: the
release workflow (.github/workflows/release.yml) then tags that commit and publishes the notes.

``python scripts/release.py tag [REV]`` is what the workflow runs on each commit reaching main: when
REV (default HEAD) adds a version header to CHANGELOG.md, it prints ``vX.Y.Z`` on the first line
and that section's notes after it; otherwise it prints nothing. ``--notes-file PATH`` writes the
notes there instead. Exit status 2 on any refusal, with the reason on stderr.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

REPO_ROOT = Path(__file__).resolve().parents[1]
CHANGELOG = "CHANGELOG.md"
UNRELEASED = "## Unreleased"
# `## 0.2.0 (2026-12-05)`; the date is optional (0.1.0 was released without one).
HEADER = re.compile(r"^## (?P<version>\d+(?:\.\d+)*)(?: \((?P<date>\d{4}-\d{2}-\d{2})\))?\s*$")
REFUSED = 2


class Refused(Exception):
    """A release that must not be made; the message says why and what to do."""


@dataclass(frozen=True)
class Section:
    version: Version
    title: str  # as written after "## "
    notes: str  # the section's body, stripped


def parse_version(text: str) -> Version:
    try:
        version = Version(text)
    except InvalidVersion:
        raise Refused(f"{text!r} is not a PEP 440 version (write e.g. 0.2.0, no 'v')") from None
    if version.is_prerelease or version.is_devrelease or version.local or version.epoch:
        # copier update ignores pre-releases by default; a release here is for everyone.
        raise Refused(f"{text} is not a final release version (write e.g. 0.2.0)")
    if str(version) != text:
        raise Refused(f"write the version as {version}, not {text!r}")
    return version


def sections(changelog: str) -> list[Section]:
    """Every released section, newest first as written."""
    found: list[Section] = []
    lines = changelog.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    for index, start in enumerate(starts):
        match = HEADER.match(lines[start])
        if match is None:
            continue
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        body = "\n".join(lines[start + 1 : end]).strip()
        found.append(Section(Version(match["version"]), lines[start][3:].strip(), body))
    return found


def released_versions(changelog: str) -> list[Version]:
    return [section.version for section in sections(changelog)]


def cut(changelog: str, version_text: str, day: datetime.date) -> str:
    """``changelog`` with "Unreleased" moved into ``## version (day)``."""
    version = parse_version(version_text)
    newer = [old for old in released_versions(changelog) if old >= version]
    if newer:
        raise Refused(
            f"{version} is not greater than the released {max(newer)}: "
            "pick a higher version (PEP 440)"
        )
    lines = changelog.splitlines()
    try:
        start = lines.index(UNRELEASED)
    except ValueError:
        raise Refused(f"{CHANGELOG} has no '{UNRELEASED}' line to release") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = lines[start + 1 : end]
    if not any(line.strip() for line in body):
        raise Refused(f"'{UNRELEASED}' in {CHANGELOG} is empty: nothing to release")
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    header = f"## {version} ({day.isoformat()})"
    released = [UNRELEASED, "", header, "", *body, ""]
    return "\n".join([*lines[:start], *released, *lines[end:]]).rstrip("\n") + "\n"


# ------------------------------------------------------------------------------ tagging
def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def changelog_at(repo: Path, rev: str) -> str:
    """CHANGELOG.md as of ``rev`` ('' when the file is not there)."""
    result = subprocess.run(
        ["git", "show", f"{rev}:{CHANGELOG}"], cwd=repo, capture_output=True, text=True
    )
    return result.stdout if result.returncode == 0 else ""


def first_parent(repo: Path, rev: str) -> str | None:
    parents = git(repo, "rev-list", "--parents", "-n", "1", rev).split()[1:]
    return parents[0] if parents else None


def added_section(repo: Path, rev: str) -> Section | None:
    """The release ``rev`` makes: a version header in its CHANGELOG.md that its first parent
    (main before it: a merge that brings a release commit into main makes the release) does not
    have, the newest one if several; None for any other commit."""
    parent = first_parent(repo, rev)
    before = set(released_versions(changelog_at(repo, parent))) if parent else set()
    found = sections(changelog_at(repo, rev))
    new = [section for section in found if section.version not in before]
    return max(new, key=lambda section: section.version) if new else None


def release_commits(repo: Path, rev: str = "HEAD") -> list[tuple[str, Section]]:
    """Every commit of ``rev``'s first-parent history that releases a version, oldest first."""
    listed = git(repo, "log", "--format=%H", "--reverse", "--first-parent", rev, "--", CHANGELOG)
    found: list[tuple[str, Section]] = []
    seen: set[Version] = set()
    for commit in listed.split():
        section = added_section(repo, commit)
        if section is not None and section.version not in seen:
            seen.add(section.version)
            found.append((commit, section))
    return found


def tag_name(version: Version) -> str:
    return f"v{version}"


# ---------------------------------------------------------------------------------- CLI
def run_cut(args: argparse.Namespace) -> int:
    path: Path = args.changelog
    day = datetime.date.fromisoformat(args.date) if args.date else datetime.date.today()
    path.write_text(cut(path.read_text(encoding="utf-8"), args.version, day), encoding="utf-8")
    print(f"{path.name}: released {args.version} ({day.isoformat()}); now commit it on main:")
    print(f'  git commit -am "Release {args.version}"   # the workflow tags it v{args.version}')
    return 0


def run_tag(args: argparse.Namespace) -> int:
    repo: Path = args.repo
    section = added_section(repo, args.rev)
    if section is None:
        return 0  # not a release commit: nothing to tag
    notes = section.notes or f"Release {section.version}."
    if args.notes_file:
        args.notes_file.write_text(notes + "\n", encoding="utf-8")
        print(tag_name(section.version))
    else:
        print(tag_name(section.version))
        print(notes)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "tag":
        parser = argparse.ArgumentParser(prog="release.py tag", description="Tag of a commit.")
        parser.add_argument("rev", nargs="?", default="HEAD")
        parser.add_argument("--repo", type=Path, default=Path.cwd())
        parser.add_argument("--notes-file", type=Path)
        handler, parsed = run_tag, parser.parse_args(argv[1:])
    else:
        parser = argparse.ArgumentParser(
            prog="release.py", description="Release the Unreleased changes as VERSION."
        )
        parser.add_argument("version", help="PEP 440, greater than the last release: 0.2.0")
        parser.add_argument("--date", help="YYYY-MM-DD (default: today)")
        parser.add_argument("--changelog", type=Path, default=REPO_ROOT / CHANGELOG)
        handler, parsed = run_cut, parser.parse_args(argv)
    try:
        return handler(parsed)
    except Refused as refusal:
        print(f"release.py: refused: {refusal}", file=sys.stderr)
        return REFUSED
    except subprocess.CalledProcessError as error:
        print(f"release.py: git failed: {error.stderr.strip()}", file=sys.stderr)
        return REFUSED


if __name__ == "__main__":
    raise SystemExit(main())
