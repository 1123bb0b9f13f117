"""Reading a YAML configuration file with every failure as one line naming the file (and line)."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_config_text(path: str, what: str, flag: str, error: type[Exception]) -> str:
    """The file's text; `what` is e.g. "config file", `flag` the option that names it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {what} not found (pass its path with {flag})") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {what}") from None
    except PermissionError:
        raise error(f"{path}: permission denied reading the {what}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: {what} is not UTF-8 text") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def parse_yaml(text: str, name: str, error: type[Exception]) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise error(f"{name}: {where}YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{name}: YAML syntax error: {str(exc).splitlines()[0]}") from None
