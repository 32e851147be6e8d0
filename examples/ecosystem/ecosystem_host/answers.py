"""The top-level answers of a ``.copier-answers.yml``, read with the standard library only.

One parser for the host (``bots.py``) and ``tools/update_bots.py``, which runs with the bare
Python of the VPS. The file is what copier writes (its ``to_nice_yaml``): one ``key: value``
line per answer, a long value folded onto indented lines, strings quoted when YAML needs it.
Only scalars are read (a list or mapping answer is left out); values stay text. Not read as
YAML would: NEL, LS and PS (U+0085, U+2028, U+2029) inside a value, which YAML 1.1 takes for
line breaks (PyYAML itself does not read NEL back as written).
"""

from __future__ import annotations

import re
from pathlib import Path

ANSWERS_FILE = ".copier-answers.yml"

# A key YAML would read otherwise (`no`, `on`, `null`) is quoted.
_KEY_LINE = re.compile(
    r"(?P<quote>['\"]?)(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?P=quote):(?:[ \t]+(?P<value>.*?))?[ \t]*"
)
# Escapes of a double-quoted YAML scalar (YAML 1.1, section 5.7).
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)
_ESCAPED = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v",
            "f": "\f", "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\",
            "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}  # fmt: skip


def _unescaped(match: re.Match[str]) -> str:
    code = match[1]
    if len(code) > 1:
        return chr(int(code[1:], 16))
    return _ESCAPED.get(code, match[0])


def _unquoted(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _ESCAPE.sub(_unescaped, value[1:-1])
    return value


def _ends_with_odd_backslashes(text: str) -> bool:
    return (len(text) - len(text.rstrip("\\"))) % 2 == 1


def _is_open(value: str) -> bool:
    """Whether a quoted scalar goes on past this line (its closing quote is still to come)."""
    if value[:1] == "'":
        return not value[1:].replace("''", "").endswith("'")
    if value[:1] == '"':
        body = value[1:]
        return not (body.endswith('"') and not _ends_with_odd_backslashes(body[:-1]))
    return False


def _folded(pieces: list[str]) -> str:
    """YAML line folding: a line break is a space, each empty line a newline, and a break
    escaped with a backslash (double quotes) joins the lines as they are."""
    text = pieces[0]
    for piece in pieces[1:]:
        if piece == "":
            text += "\n"
        elif text.startswith('"') and _ends_with_odd_backslashes(text):
            text = text[:-1] + piece
        elif text.endswith("\n"):
            text += piece
        else:
            text += " " + piece
    return text


def parse_answers(text: str) -> dict[str, str]:
    """Every top-level scalar answer in ``text``, unquoted (``''`` for an empty string)."""
    answers: dict[str, str] = {}
    key: str | None = None
    pieces: list[str] = []

    def finish() -> None:
        if key is not None and pieces:
            answers[key] = _unquoted(_folded(pieces))

    # Lines end at \n only: str.splitlines() would also split at characters YAML keeps.
    for line in text.replace("\r\n", "\n").split("\n"):
        inside_quotes = bool(pieces) and _is_open(_folded(pieces))
        if line[:1] in (" ", "\t") or (inside_quotes and not line.strip(" \t")):
            # A folded continuation of the value above (a list item or a nested key when the
            # key had no value on its own line: not a scalar, ignored).
            if pieces:
                pieces.append(line.strip(" \t"))  # YAML trims these only
            continue
        finish()
        key, pieces = None, []
        match = _KEY_LINE.fullmatch(line)
        if match is not None:
            key = match["key"]
            value = match["value"] or ""
            # A block scalar (| or >) is no single-line answer: left out like a list.
            if value and value[0] not in "|>#":
                pieces = [value]
    finish()
    return answers


def read_answers(directory: Path) -> dict[str, str]:
    """The scalar answers of ``directory/.copier-answers.yml``; empty when it cannot be read."""
    try:
        text = (directory / ANSWERS_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    return parse_answers(text)
