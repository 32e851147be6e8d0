#!/usr/bin/env python3
"""update-bots: bring every bot repository of this ecosystem to a newer template release.

For each bot directory (the `bots` answer of this ecosystem, or the names given):

- a dirty git tree, a detached HEAD or a leftover update branch is refused, untouched;
- the target is the newest template release (`copier check-update`) or `--version`; the
  template's tag that carries that version (`v1.2.3`, `1.2.3`, ...) goes to `copier update`;
- the update runs on a new branch `template-update/<version>` (`copier update --trust
  --defaults --conflict inline`), is committed there, and the bot's checks run on it;
- green: the bot's branch (main) is fast-forwarded to it and the update branch deleted;
- a conflict (inline markers, `*.rej` files) or a red check: the branch is kept for review and
  the bot's branch is left exactly where it was.

A table at the end lists every bot; the exit status is 1 when any bot needs attention.
Standard library only: runs with the Python of the VPS (`./update-bots --help`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

ECOSYSTEM = Path(__file__).resolve().parents[1]
# The host's answers-file parser (standard library too): one reader for both.
sys.path.insert(0, str(ECOSYSTEM))
from ecosystem_host.answers import ANSWERS_FILE, read_answers  # noqa: E402

ANSWERS = ANSWERS_FILE

BRANCH_PREFIX = "template-update/"
DEFAULT_CHECKS = (
    "ruff check . && ruff format --check . && mypy && python -m pytest -q -p no:cacheprovider"
)
CONFLICT_MARKER = re.compile(rb"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)
# `git status --porcelain` codes of unmerged paths (git-status(1), "Short Format").
UNMERGED = {"DD", "AU", "UD", "UA", "DU", "AA", "UU"}
# A PEP 440 version as copier reads a tag (packaging's VERSION_PATTERN, PEP 440 appendix B);
# copier reports the normalised form (`v1.2.3` -> 1.2.3), which is not a git ref.
PEP440 = re.compile(
    r"""^\s*v?(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)
    (?P<pre>[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?P<post>(?:-(?P<post_n1>[0-9]+))|(?:[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?))?
    (?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
PRE_SPELLINGS = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}
# `_src_path` shortcuts copier expands (copier's vcs.get_repo).
SHORTCUTS = {"gh:": "https://github.com/", "gl:": "https://gitlab.com/"}


class Result(StrEnum):
    """How one bot's update ended (the table's `result` column)."""

    UPDATED = "updated"
    CURRENT = "already current"
    WOULD_UPDATE = "would update"
    CONFLICT = "conflict"  # the update branch is kept for review
    CHECKS_FAILED = "checks failed"  # the update branch is kept for review
    REFUSED = "refused"  # the bot's repository is not in a state to update: untouched
    FAILED = "failed"  # a command failed: the bot is back where it was

    @property
    def fine(self) -> bool:
        """Nothing for the owner to do."""
        return self in (Result.UPDATED, Result.CURRENT, Result.WOULD_UPDATE)


@dataclass
class Outcome:
    bot: str
    result: Result
    detail: str = ""
    old: str = "?"
    new: str = "?"


class Stop(Exception):
    """A bot's update cannot go on (refused, or a command failed); says why."""

    def __init__(self, result: Result, detail: str) -> None:
        super().__init__(detail)
        self.result = result
        self.detail = detail


def run(
    cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A command's result, stdout and stderr interleaved in `.stdout`; never raises on exit."""
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )


def last_lines(text: str, count: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-count:])


def git(repo: Path, *args: str) -> str:
    result = run(["git", *args], repo)
    if result.returncode != 0:
        raise Stop(Result.FAILED, f"git {' '.join(args)} failed:\n{last_lines(result.stdout)}")
    return result.stdout


def answer(directory: Path, key: str) -> str | None:
    """One top-level answer of `directory`'s copier answers file, None when missing."""
    return read_answers(directory).get(key)


def normalised(tag: str) -> str | None:
    """The PEP 440 normal form of a tag (`v1.2.3` -> `1.2.3`, `1.0-RC1` -> `1.0rc1`), as copier
    compares and reports it; None when the tag is no version (copier ignores those)."""
    match = PEP440.match(tag)
    if match is None:
        return None
    part = match.group
    text = (f"{int(part('epoch'))}!" if part("epoch") else "") + ".".join(
        str(int(number)) for number in part("release").split(".")
    )
    if part("pre"):
        label = part("pre_l").lower()
        text += PRE_SPELLINGS.get(label, label) + str(int(part("pre_n") or 0))
    if part("post"):
        text += ".post" + str(int(part("post_n1") or part("post_n2") or 0))
    if part("dev"):
        text += ".dev" + str(int(part("dev_n") or 0))
    if part("local"):
        text += "+" + ".".join(
            str(int(piece)) if piece.isdigit() else piece.lower()
            for piece in re.split(r"[-_.]", part("local"))
        )
    return text


def template_url(bot: Path) -> str | None:
    """Where the bot's template lives, as git understands it (`_src_path`, shortcuts expanded)."""
    source = answer(bot, "_src_path")
    if not source:
        return None
    for shortcut, prefix in SHORTCUTS.items():
        if source.startswith(shortcut):
            return prefix + source.removeprefix(shortcut)
    local = Path(source).expanduser()
    if not local.is_absolute() and (bot / local).exists():
        return str((bot / local).resolve())
    return source


def release_tag(bot: Path, version: str) -> str:
    """The template's tag that carries `version`: the tag spelled exactly so, else any tag with
    the same PEP 440 version (`v1.2.3` for 1.2.3). `version` itself when none is found (copier
    then names the missing revision)."""
    url = template_url(bot)
    if url is None:
        return version
    listed = run(["git", "ls-remote", "--tags", "--refs", "--", url], bot)
    if listed.returncode != 0:
        raise Stop(Result.FAILED, f"git ls-remote {url} failed:\n{last_lines(listed.stdout)}")
    tags = [line.split("\trefs/tags/", 1)[-1] for line in listed.stdout.splitlines() if line]
    if version in tags:
        return version
    wanted = normalised(version)
    matching = sorted(tag for tag in tags if wanted is not None and normalised(tag) == wanted)
    return matching[0] if matching else version


def listed_bots(ecosystem: Path) -> list[str]:
    """The bot directories of the ecosystem: its `bots` answer (comma-separated slugs)."""
    value = answer(ecosystem, "bots")
    if not value:
        raise SystemExit(
            f"update-bots: no `bots` answer in {ecosystem / ANSWERS}; name the bot directories "
            "on the command line"
        )
    return [slug.strip() for slug in value.split(",") if slug.strip()]


def default_copier() -> list[str]:
    found = shutil.which("copier")
    return [found] if found else [sys.executable, "-m", "copier"]


@dataclass
class Options:
    copier: list[str]
    checks: str
    version: str | None
    dry_run: bool
    push: bool
    log_dir: Path


class BotUpdate:
    """The update of one bot repository, step by step (`run` returns its outcome)."""

    def __init__(self, name: str, path: Path, options: Options) -> None:
        self.path = path
        self.options = options
        self.outcome = Outcome(bot=name, result=Result.FAILED)

    def run(self) -> Outcome:
        try:
            self.outcome.result, self.outcome.detail = self._update()
        except Stop as stop:
            self.outcome.result, self.outcome.detail = stop.result, stop.detail
        return self.outcome

    # ------------------------------------------------------------------------- the steps
    def _update(self) -> tuple[Result, str]:
        base = self._preflight()
        old, new = self._versions()
        self.outcome.old, self.outcome.new = old, new
        if old == new:
            return Result.CURRENT, ""
        branch = BRANCH_PREFIX + new
        if git(self.path, "branch", "--list", branch).strip():
            raise Stop(
                Result.REFUSED,
                f"branch {branch} is left from an earlier run: merge it or delete it "
                f"(git -C {self.path} branch -D {branch})",
            )
        tag = release_tag(self.path, self.options.version or new)
        if self.options.dry_run:
            return (
                Result.WOULD_UPDATE,
                f"would run copier update --vcs-ref {tag} on branch {branch}",
            )
        git(self.path, "switch", "--quiet", "-c", branch)
        try:
            review = self._apply(new, tag, branch)
        except Stop:
            # copier or git failed: back to where the bot was, no branch left.
            git(self.path, "reset", "--quiet", "--hard")
            git(self.path, "clean", "--quiet", "-fd")
            git(self.path, "switch", "--quiet", base)
            git(self.path, "branch", "--quiet", "-D", branch)
            raise
        git(self.path, "switch", "--quiet", base)
        if review is not None:  # a conflict or red checks: the branch stays for review
            self._push(branch)
            return review
        git(self.path, "merge", "--quiet", "--ff-only", branch)
        git(self.path, "branch", "--quiet", "-d", branch)
        self._push(base)
        return Result.UPDATED, f"checks green, {base} fast-forwarded"

    def _preflight(self) -> str:
        """The checked-out branch of a clean generated bot; anything else is refused."""
        if not self.path.is_dir():
            raise Stop(Result.REFUSED, f"{self.path} does not exist (clone the bot there)")
        if not (self.path / ".git").exists():
            raise Stop(Result.REFUSED, f"{self.path} is not a git repository")
        if not (self.path / ANSWERS).is_file():
            raise Stop(Result.REFUSED, f"no {ANSWERS}: not generated by the template")
        dirty = git(self.path, "status", "--porcelain", "--untracked-files=all").splitlines()
        if dirty:
            shown = ", ".join(line[3:] for line in dirty[:5]) + (" ..." if len(dirty) > 5 else "")
            raise Stop(Result.REFUSED, f"uncommitted changes ({shown}): commit or stash them first")
        base = git(self.path, "branch", "--show-current").strip()
        if not base:
            raise Stop(Result.REFUSED, "HEAD is detached: check out the bot's branch first")
        return base

    def _versions(self) -> tuple[str, str]:
        current = answer(self.path, "_commit")
        if not current:
            raise Stop(
                Result.REFUSED, f"no _commit in {ANSWERS}: copy the bot from a tagged release"
            )
        if self.options.version:
            wanted = self.options.version
            return normalised(current) or current, normalised(wanted) or wanted
        cmd = [*self.options.copier, "check-update", "--output-format", "json", "."]
        result = subprocess.run(
            cmd,
            cwd=self.path,
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            report = None
        if result.returncode != 0 or not isinstance(report, dict):
            output = result.stderr + result.stdout
            raise Stop(Result.FAILED, f"copier check-update failed:\n{last_lines(output)}")
        # copier reports PEP 440 normal forms; `_commit` is the tag (v1.2.3): compare normal forms.
        now = str(report.get("current_version") or normalised(current) or current)
        latest = str(report.get("latest_version") or now)
        return now, (latest if report.get("update_available") else now)

    def _apply(self, version: str, tag: str, branch: str) -> tuple[Result, str] | None:
        """Update to `tag`, commit and check on `branch`; the outcome when the branch must stay
        for review (a conflict, red checks), None when it is green."""
        cmd = [
            *self.options.copier,
            "update",
            "--trust",
            "--defaults",
            "--conflict",
            "inline",
            "--vcs-ref",
            tag,
        ]
        result = run(cmd, self.path)
        if result.returncode != 0:
            raise Stop(Result.FAILED, f"copier update failed:\n{last_lines(result.stdout)}")
        leftovers = self._leftovers()
        git(self.path, "add", "-A")
        message = f"Update template to {version}"
        if leftovers:
            message += "\n\nCONFLICTS to resolve before merging:\n" + "\n".join(leftovers)
        # The tool commits on its own branch and checks itself: the bot's hooks are not needed.
        git(self.path, "commit", "--quiet", "--no-verify", "-m", message)
        if leftovers:
            return (
                Result.CONFLICT,
                f"resolve on branch {branch}: {', '.join(leftovers)} "
                f"(git -C {self.path} switch {branch})",
            )
        checks = self._checks(version)
        if checks is not None:
            return Result.CHECKS_FAILED, f"branch {branch} kept; log: {checks}"
        return None

    def _leftovers(self) -> list[str]:
        """Files with conflicts after the update: unmerged, `*.rej`, or with inline markers."""
        found: list[str] = []
        status = git(self.path, "status", "--porcelain", "--untracked-files=all", "-z")
        for entry in filter(None, status.split("\0")):
            code, name = entry[:2], entry[3:]
            path = self.path / name
            marked = path.is_file() and CONFLICT_MARKER.search(path.read_bytes()) is not None
            if code in UNMERGED or name.endswith(".rej") or marked:
                found.append(name)
        # A bot whose .gitignore still lists *.rej (older template versions) hides them from status.
        hidden = ("--others", "--ignored", "--exclude-standard")
        ignored = git(self.path, "ls-files", "-z", *hidden, "--", "*.rej")
        found += filter(None, ignored.split("\0"))
        return sorted(set(found))

    def _checks(self, version: str) -> Path | None:
        """Run the checks on the committed update; the log's path when they failed."""
        env = dict(os.environ)
        venv = self.path / ".venv" / "bin"
        if venv.is_dir():
            env["PATH"] = f"{venv}{os.pathsep}{env.get('PATH', '')}"
            env["VIRTUAL_ENV"] = str(venv.parent)
        result = run(["sh", "-c", self.options.checks], self.path, env=env)
        self.options.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.options.log_dir / f"{self.outcome.bot}-{version}.log"
        log.write_text(f"$ {self.options.checks}\n{result.stdout}", encoding="utf-8")
        # Whatever the checks created (caches not ignored by the bot) must not block a switch.
        git(self.path, "reset", "--quiet", "--hard")
        git(self.path, "clean", "--quiet", "-fd")
        if result.returncode == 0:
            return None
        print(
            f"--- {self.outcome.bot}: checks failed\n{last_lines(result.stdout, 30)}",
            file=sys.stderr,
        )
        return log

    def _push(self, branch: str) -> None:
        if self.options.push:
            result = run(["git", "push", "--quiet", "origin", branch], self.path)
            if result.returncode != 0:
                pushed = f"git push origin {branch} failed ({branch} is done locally)"
                raise Stop(Result.FAILED, f"{pushed}:\n{last_lines(result.stdout)}")


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("bot", "from", "to", "result", "details")]
    rows += [
        (o.bot, o.old, o.new, o.result, o.detail.splitlines()[0] if o.detail else "")
        for o in outcomes
    ]
    widths = [max(len(row[col]) for row in rows) for col in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + ("  " + row[4] if row[4] else "")
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def parse(argv: Sequence[str] | None) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(
        prog="update-bots",
        description="Update every bot of this ecosystem to a newer template release "
        "(docs/UPDATING.md of the template, section 'A fleet of bots').",
    )
    parser.add_argument(
        "bots", nargs="*", help=f"bot directories (default: the `bots` answer in {ANSWERS})"
    )
    parser.add_argument(
        "--version",
        help="template release to update to, as a version or its tag: 1.2.3 or v1.2.3 "
        "(default: the newest)",
    )
    parser.add_argument("--dry-run", action="store_true", help="only report what would change")
    parser.add_argument(
        "--checks",
        default=DEFAULT_CHECKS,
        help="shell command run in each updated bot; non-zero means red (default: %(default)s). "
        "A bot's .venv/bin comes first on PATH when it exists",
    )
    parser.add_argument(
        "--push",
        action="store_true",
        help="push the updated branch, or the update branch kept for review, to origin",
    )
    parser.add_argument(
        "--copier",
        default=None,
        help="copier command (default: `copier` on PATH, else this Python's copier module)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=ECOSYSTEM / "logs" / "update-bots",
        help="where failed checks' output is kept (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    options = Options(
        copier=shlex.split(args.copier) if args.copier else default_copier(),
        checks=args.checks,
        version=args.version,
        dry_run=args.dry_run,
        push=args.push,
        log_dir=args.log_dir.resolve(),
    )
    return list(args.bots) or listed_bots(ECOSYSTEM), options


def main(argv: Sequence[str] | None = None) -> int:
    bots, options = parse(argv)
    outcomes = []
    for name in bots:
        print(f"update-bots: {name} ...", file=sys.stderr, flush=True)
        outcome = BotUpdate(name, ECOSYSTEM / name, options).run()
        if outcome.detail and "\n" in outcome.detail:
            print(f"--- {name}: {outcome.detail}", file=sys.stderr)
        outcomes.append(outcome)
    print(table(outcomes))
    attention = [o.bot for o in outcomes if not o.result.fine]
    if attention:
        print(f"\nNeeds attention: {', '.join(attention)}")
    return 1 if attention else 0


if __name__ == "__main__":
    sys.exit(main())
