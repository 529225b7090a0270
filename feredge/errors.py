"""User-facing errors: the CLI prints them as one line and exits non-zero, without a traceback."""

import json
from pathlib import Path


class FeredgeError(Exception):
    """An error caused by input the user can fix (a file, a field, an option)."""


class DataError(FeredgeError):
    """A dataset file or record is not what the loader expects."""


class ModelKwargsError(FeredgeError, ValueError):
    """Architecture settings (``model_kwargs``) that the named model does not take."""


class CheckpointError(FeredgeError):
    """A checkpoint does not match the model it is loaded into."""


def read_format_json(path: Path, fmt: str, error: type[FeredgeError], missing: str) -> dict:
    """A feredge JSON file whose 'format' field must be ``fmt``; ``missing`` is the message when it is absent."""
    path = Path(path)
    if not path.is_file():
        raise error(missing)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text (expected JSON)") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: is a JSON {type(data).__name__}, expected an object with a 'format' field")
    if data.get("format") != fmt:
        raise error(f"{path}: field 'format' is {data.get('format')!r}, expected {fmt!r}")
    return data


def absent(path: Path | str, expected: str, missing: str = "file not found") -> str:
    """Why ``path`` is not a readable file, in the words a user searches for ("is a folder", "symbolic link
    loop", "broken symbolic link", else ``missing``), and what was ``expected`` there."""
    import errno
    import os

    path = Path(path)
    if path.is_dir():
        return f"is a folder, expected {expected}"
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop (a link that leads back to itself); expected {expected}"
        if path.is_symlink():
            return f"broken symbolic link (to {os.readlink(path)}, which does not exist); expected {expected}"
    return f"{missing} (expected {expected})"
