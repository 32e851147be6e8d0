"""``<NAME>_FILE=<path>``: a setting read from a file, the way Docker secrets are handed over.

Docker Swarm mounts each secret as a file (``/run/secrets/<name>``) and never puts its value in
the environment, where ``docker inspect`` would show it. Like the official postgres image and
the Local Bot API server's image, every setting ``NAME`` of a bot can therefore be given as
``NAME_FILE``: the file's content, without its trailing line break, is the value. ``NAME_FILE``
works in the environment and in ``.env``; setting both ``NAME`` and ``NAME_FILE`` in the same
place is refused (which one wins would be a guess), as is a file that is missing, unreadable,
empty or not UTF-8 text: :class:`SecretFileError` names the variable and the path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = ["FILE_SUFFIX", "SecretFileError", "SecretFilesSource", "read_secret_file"]

FILE_SUFFIX = "_FILE"
# Docker caps a secret at 500 KB; a setting is far smaller. A larger file is a wrong path.
MAX_BYTES = 512 * 1024


class SecretFileError(ValueError):
    """A ``NAME_FILE`` variable that cannot give its setting a value; ``str()`` says why."""


def read_secret_file(variable: str, raw_path: str) -> str:
    """The content of ``raw_path`` without trailing line breaks, or :class:`SecretFileError`."""
    path = Path(raw_path.strip())
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SecretFileError(f"{variable}: {path} is larger than {MAX_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SecretFileError(
            f"{variable}: {path} does not exist (a Docker secret is mounted only in the"
            " services that list it under `secrets:`)"
        ) from None
    except IsADirectoryError:
        raise SecretFileError(f"{variable}: {path} is a directory, not a file") from None
    except PermissionError:
        raise SecretFileError(
            f"{variable}: {path} is not readable by this process (uid {os.geteuid()})"
        ) from None
    except UnicodeDecodeError:
        raise SecretFileError(f"{variable}: {path} is not UTF-8 text") from None
    except OSError as error:
        raise SecretFileError(f"{variable}: cannot read {path}: {error.strerror}") from None
    value = text.rstrip("\r\n")
    if not value.strip():
        raise SecretFileError(f"{variable}: {path} is empty")
    return value


class SecretFilesSource(PydanticBaseSettingsSource):
    """The settings given as ``NAME_FILE`` in ``variables`` (the environment or ``.env``)."""

    def __init__(
        self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None], where: str
    ) -> None:
        super().__init__(settings_cls)
        self.variables = variables
        self.where = where

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads every field at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = name + FILE_SUFFIX
            path = self.variables.get(variable)
            if path is None or not path.strip():
                continue
            direct = self.variables.get(name)
            if direct is not None and direct.strip():
                raise SecretFileError(
                    f"{variable}: {name} is set {self.where} as well; set only one of them"
                )
            values[name] = read_secret_file(variable, path)
        return values
