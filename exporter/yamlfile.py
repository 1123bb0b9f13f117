"""Reading a YAML configuration file with every failure as one short line naming the file (and line).

A config file is operator input, but it may come from a ConfigMap anybody in a namespace can edit, so
the reader is bounded like every other input: a size cap, a nesting cap, a cap on what aliases may
expand to (a "billion laughs" file otherwise expands to gigabytes in a message or a walk), no
duplicate keys (YAML keeps the last silently), numbers of sane length, and nothing unbounded quoted
back in a message. Whatever Python raises while reading becomes the caller's one-line error.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

# A real exporter.yaml or web config is a few kilobytes; a megabyte leaves room for long user lists.
MAX_CONFIG_BYTES = 1 << 20
MAX_DEPTH = 64
# Values the document may hold once every alias is expanded: the bound of any walk over it.
MAX_EXPANDED_NODES = 50_000
MAX_NUMBER_CHARS = 64
# What of a value or a parser message a one-line error may quote.
MAX_QUOTED = 80
MAX_MESSAGE = 900


def clip(text: str, limit: int = MAX_QUOTED) -> str:
    """`text` on one line and at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def show(value: object) -> str:
    """A value quoted in a message: its repr, clipped (a repr of a huge value is itself bounded work
    here, since the document is at most MAX_CONFIG_BYTES and MAX_EXPANDED_NODES)."""
    if isinstance(value, str):
        return clip(repr(value[: MAX_QUOTED + 1]))
    if isinstance(value, int | float | bool) or value is None:
        return clip(repr(value))
    return f"a {type(value).__name__}"


class _Refused(yaml.MarkedYAMLError):
    """A limit of this reader, reported like a syntax error (with the line)."""


def _parser_base() -> type:
    """libyaml's parser when PyYAML has it (about six times quicker), else PyYAML's own."""
    try:
        from yaml._yaml import CParser

        return CParser
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        from yaml.parser import Parser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class PyParser(Reader, Scanner, Parser):
            def __init__(self, stream: str) -> None:
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                Parser.__init__(self)

        return PyParser


_Parser: Any = _parser_base()


class BoundedLoader(Composer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
    """A safe loader with the limits above: the parser (events) from libyaml, the composition (events to
    nodes) in Python, where it can be watched node by node, then PyYAML's safe construction."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values it holds once aliases are expanded
        self._total = 0  # values of the document so far, aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        alias = self.check_event(AliasEvent)
        mark: Any = getattr(self.peek_event(), "start_mark", None)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
            node: Any = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) in self._sizes:  # an alias: the document holds its node once more, expanded
            self._total += self._sizes[id(node)]
        elif alias:
            raise _Refused(problem="an alias refers to a node that contains it", problem_mark=mark)
        else:  # a new node: its children were counted as they were composed
            self._sizes[id(node)] = self._expanded_size(node)
            self._total += 1
        # Counted as the document is read, so that a huge list is refused at its 50,001st value, not after.
        if self._total > MAX_EXPANDED_NODES:
            raise _Refused(
                problem=f"the document holds over {MAX_EXPANDED_NODES} values once aliases are expanded",
                problem_mark=mark,
            )
        return node  # type: ignore[no-any-return]

    def _expanded_size(self, node: Node) -> int:
        if isinstance(node, SequenceNode):
            return 1 + sum(self._sizes[id(child)] for child in node.value)
        if isinstance(node, MappingNode):
            return 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        return 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConstructorError(
                    problem=f"the key {show(key)} appears twice in one mapping", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        _short_number(node)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        _short_number(node)
        return super().construct_yaml_float(node)


def _short_number(node: ScalarNode) -> None:
    # int() refuses over 4,300 digits with a message about sys.set_int_max_str_digits; no setting here
    # is a number of even 64 characters, so refuse far earlier, with the line.
    if len(node.value) > MAX_NUMBER_CHARS:
        raise ConstructorError(
            problem=f"a number of {len(node.value)} characters (at most {MAX_NUMBER_CHARS})",
            problem_mark=node.start_mark,
        )


# What add_constructor does, for a class mypy's stubs do not take as a loader.
BoundedLoader.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:int": BoundedLoader.construct_yaml_int,
    "tag:yaml.org,2002:float": BoundedLoader.construct_yaml_float,
}


def read_config_text(path: str, what: str, flag: str, error: type[Exception]) -> str:
    """The file's text; `what` is e.g. "config file", `flag` the option that names it.

    Opened non-blocking and checked to be a regular file first: a FIFO or a device at the path must not
    hang a reload. Read up to MAX_CONFIG_BYTES + 1, whatever the file claims its size is."""
    shown = clip(path, 300)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except ValueError:
        raise error(f"{shown}: the path of the {what} holds a NUL byte") from None
    except OSError as exc:
        raise error(_open_failure(shown, what, flag, exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"{shown}: is a directory, not a {what}")
        if not stat.S_ISREG(mode):
            raise error(f"{shown}: the {what} is not a regular file")
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise error(_open_failure(shown, what, flag, exc)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise error(f"{shown}: the {what} is over {MAX_CONFIG_BYTES} bytes; a config this large is a mistake")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{shown}: {what} is not UTF-8 text") from None


def _open_failure(shown: str, what: str, flag: str, exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return f"{shown}: {what} not found (pass its path with {flag})"
    if exc.errno == errno.EISDIR:
        return f"{shown}: is a directory, not a {what}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{shown}: permission denied reading the {what}"
    return f"{shown}: cannot read the {what}: {clip(exc.strerror or str(exc))}"


def parse_yaml(text: str, name: str, error: type[Exception]) -> object:
    """The document, or `error` with one line: every exception the loader can raise (a RecursionError,
    a ValueError, a MemoryError included) ends here."""
    try:
        loader = BoundedLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = ", ".join(clip(p, 200) for p in (exc.context, exc.problem) if p) or clip(str(exc), 200)
        kind = "" if isinstance(exc, _Refused | ConstructorError) else "YAML syntax error: "
        raise error(clip(f"{name}: {where}{kind}{problem}", MAX_MESSAGE)) from None
    except yaml.YAMLError as exc:
        raise error(clip(f"{name}: YAML syntax error: {exc}", MAX_MESSAGE)) from None
    except (RecursionError, MemoryError):
        raise error(f"{name}: the YAML document is too deeply nested or too large to read") from None
    except Exception as exc:  # a config must fail as one line, whatever the loader raised
        raise error(clip(f"{name}: cannot read the YAML: {type(exc).__name__}: {exc}", MAX_MESSAGE)) from None
