"""The snapshot: one immutable model of what a status source said at one moment.

Sessions and routes are stored column by column (one exact tuple per field): a 100,000-client status file
then costs a few dozen container objects instead of 200,000 row objects. That matters beyond memory:
NamedTuples are tuple subclasses, which CPython's cyclic GC never untracks, so every row object would be
rescanned by every full collection for as long as the snapshot lives. Exact tuples of strings and ints are
untracked by the first collection they survive.

`Session` and `Route` stay the row types: `snapshot.sessions` and `snapshot.routes` build them on first use
(and keep them) for the slow paths that want rows; the hot views read the columns. The parser's tables go
one step further (LazySessionTable, LazyRouteTable): they keep the status text a column comes from and
build the column's tuple when something first reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

HANDSHAKE_CN = "UNDEF"
CounterName = Literal["bytes_received", "bytes_sent"]


class Session(NamedTuple):
    common_name: str
    real_address: str
    remote_host: str
    remote_port: str
    protocol: str  # "tcp", "udp", or "" when neither the file nor the config says
    virtual_address: str
    virtual_ipv6_address: str
    bytes_received: int
    bytes_sent: int
    connected_since: str  # normalised to "YYYY-MM-DD HH:MM:SS" (OpenVPN's local time), "" if absent
    connected_since_epoch: int | None
    username: str
    client_id: str
    peer_id: str
    cipher: str

    @property
    def in_handshake(self) -> bool:
        """OpenVPN prints the CN as UNDEF until the TLS handshake has finished."""
        return self.common_name == HANDSHAKE_CN


class Route(NamedTuple):
    virtual_address: str
    common_name: str
    real_address: str
    last_ref: str
    last_ref_epoch: int | None


# Re-entrant: one lazy column's builder may read another column.
_LAZY_LOCK = threading.RLock()


def _columns_of(rows: Iterable[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    columns = list(zip(*rows, strict=True))
    return columns if columns else [()] * width


class SessionTable:
    """The sessions of a snapshot, one exact tuple per Session field (same names, same order)."""

    __slots__ = Session._fields

    common_name: tuple[str, ...]
    real_address: tuple[str, ...]
    remote_host: tuple[str, ...]
    remote_port: tuple[str, ...]
    protocol: tuple[str, ...]
    virtual_address: tuple[str, ...]
    virtual_ipv6_address: tuple[str, ...]
    bytes_received: tuple[int, ...]
    bytes_sent: tuple[int, ...]
    connected_since: tuple[str, ...]
    connected_since_epoch: tuple[int | None, ...]
    username: tuple[str, ...]
    client_id: tuple[str, ...]
    peer_id: tuple[str, ...]
    cipher: tuple[str, ...]

    def __init__(self, columns: Sequence[Iterable[Any]]) -> None:
        """`columns` in Session field order; each becomes an exact tuple. All must have one length."""
        if len(columns) != len(Session._fields):
            raise ValueError(f"a session table has {len(Session._fields)} columns, got {len(columns)}")
        values = [tuple(c) for c in columns]
        if len(set(map(len, values))) > 1:
            raise ValueError("session table columns differ in length")
        for name, value in zip(Session._fields, values, strict=True):
            object.__setattr__(self, name, value)

    @classmethod
    def from_rows(cls, rows: Iterable[Session]) -> SessionTable:
        return cls(_columns_of(rows, len(Session._fields)))

    def columns(self) -> tuple[tuple[Any, ...], ...]:
        return tuple(getattr(self, name) for name in Session._fields)

    def column_token(self, name: str) -> object:
        """An object that stands for a column's values: two tables whose tokens for a column are the same
        object (`is`) hold equal values there. Here the column itself; a lazy table may answer with what it
        builds the column from, which a table sharing its columns shares too."""
        return getattr(self, name)

    def count_of(self, name: str, value: object) -> int:
        """How many rows hold `value` in a column."""
        column: tuple[Any, ...] = getattr(self, name)
        return column.count(value)

    def counter_text(self, name: CounterName) -> Sequence[str]:
        """A byte counter column as decimal text, what /metrics and the JSON print."""
        counts: tuple[int, ...] = getattr(self, name)
        return tuple(map(str, counts))

    def rows(self) -> tuple[Session, ...]:
        return tuple(map(Session._make, zip(*self.columns(), strict=True)))

    def __len__(self) -> int:
        return len(self.common_name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SessionTable is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionTable):
            return NotImplemented
        return self is other or self.columns() == other.columns()

    def __hash__(self) -> int:
        return hash(self.columns())

    def __repr__(self) -> str:
        return f"SessionTable({len(self)} sessions)"


class RouteTable:
    """The routes of a snapshot, one exact tuple per Route field (same names, same order)."""

    __slots__ = Route._fields

    virtual_address: tuple[str, ...]
    common_name: tuple[str, ...]
    real_address: tuple[str, ...]
    last_ref: tuple[str, ...]
    last_ref_epoch: tuple[int | None, ...]

    def __init__(self, columns: Sequence[Iterable[Any]]) -> None:
        if len(columns) != len(Route._fields):
            raise ValueError(f"a route table has {len(Route._fields)} columns, got {len(columns)}")
        values = [tuple(c) for c in columns]
        if len(set(map(len, values))) > 1:
            raise ValueError("route table columns differ in length")
        for name, value in zip(Route._fields, values, strict=True):
            object.__setattr__(self, name, value)

    @classmethod
    def from_rows(cls, rows: Iterable[Route]) -> RouteTable:
        return cls(_columns_of(rows, len(Route._fields)))

    def columns(self) -> tuple[tuple[Any, ...], ...]:
        return tuple(getattr(self, name) for name in Route._fields)

    def rows(self) -> tuple[Route, ...]:
        return tuple(map(Route._make, zip(*self.columns(), strict=True)))

    def __len__(self) -> int:
        return len(self.virtual_address)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RouteTable is immutable: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RouteTable):
            return NotImplemented
        return self is other or self.columns() == other.columns()

    def __hash__(self) -> int:
        return hash(self.columns())

    def __repr__(self) -> str:
        return f"RouteTable({len(self)} routes)"


class _LazyColumn:
    """A column of a lazy table, read like the plain tables' attributes: `table._column(name)` builds it on
    first read and keeps it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, table: LazyRouteTable | LazySessionTable | None, owner: type | None = None) -> Any:
        if table is None:
            return self
        return table._column(self.name)


class LazyRouteTable(RouteTable):
    """A route table whose columns are built on first use by `build` (which returns them in Route field
    order, `length` rows each).

    Only the extended metrics read routes, yet building their columns is a quarter of a parse: the parser
    validates the rows when it reads them and leaves the building to the first reader.
    """

    __slots__ = ("_build", "_built", "_length")
    _build: Callable[[], Sequence[Iterable[Any]]] | None
    _built: dict[str, tuple[Any, ...]] | None  # every column, once built
    _length: int

    def __init__(self, length: int, build: Callable[[], Sequence[Iterable[Any]]]) -> None:
        object.__setattr__(self, "_length", length)
        object.__setattr__(self, "_build", build)
        object.__setattr__(self, "_built", None)

    def _column(self, name: str) -> tuple[Any, ...]:
        built = self._built
        if built is None:
            with _LAZY_LOCK:
                build = self._build
                if build is not None:  # else another thread built the columns meanwhile
                    columns = RouteTable(build()).columns()
                    if len(columns[0]) != self._length:
                        raise ValueError("lazily built route table has the wrong length")
                    object.__setattr__(self, "_built", dict(zip(Route._fields, columns, strict=True)))
                    object.__setattr__(self, "_build", None)  # frees the kept status text
                built = self._built
                assert built is not None
        return built[name]

    def __len__(self) -> int:
        return self._length


class Rebuilt:
    """A column a lazy table builds again at every read and never keeps, from a compact form that its
    builder holds (the status text the column comes from, or the values joined by newlines).

    Per-session strings cost about 70 bytes each (object header, pointer); a 100,000-session snapshot
    kept a dozen such columns, 60 MB, while each is read once per render, and splitting a text again
    costs a few milliseconds at that size. The builder, shared by the tables that share the column, is
    the column's token (SessionTable.column_token)."""

    __slots__ = ("_counts", "build")

    def __init__(self, build: Callable[[], Iterable[Any]]) -> None:
        self.build = build
        self._counts: dict[object, int] = {}

    def count(self, value: object) -> int:
        """How many times `value` occurs, kept: the values never change, and /metrics asks at every render."""
        found = self._counts.get(value)
        if found is None:
            found = self._counts[value] = list(self.build()).count(value)
        return found


class LazySessionTable(SessionTable):
    """A session table some of whose columns are built on first use.

    `columns` maps every Session field to its values, to a zero-argument builder of them (`length`
    values), or to a Rebuilt builder, whose column is built at every read and never kept. The parser
    validates every column when it reads the rows and keeps them as text (one string for all the columns,
    one per byte counter); a column becomes a tuple when something reads it: /metrics reads names and
    protocols, the JSON, the HTML page and the rows the others.
    Equality, hash and repr go through the columns, so they are those of the fully built table.
    """

    __slots__ = ("_builders", "_built", "_length", "_rebuilt", "_texts", "origin")
    _builders: dict[str, Callable[[], Iterable[Any]]]
    _built: dict[str, tuple[Any, ...]]
    _rebuilt: dict[str, Rebuilt]
    _length: int
    _texts: Mapping[str, str]
    origin: object

    def __init__(
        self,
        length: int,
        columns: Mapping[str, Iterable[Any] | Callable[[], Iterable[Any]] | Rebuilt],
        texts: Mapping[str, str] | None = None,
        origin: object = None,
    ) -> None:
        """`texts` may hold a counter column's values as the status file wrote them, joined by newlines,
        when that text is exactly what str() of the numbers gives: no integer is built, nor printed
        again, for a render, and the column is one object instead of one per session.
        `origin` is whatever the builder of the table wants to find again in the next parse (the parser
        keeps the raw text columns there, to see which rows a rewrite left alone)."""
        object.__setattr__(self, "_texts", texts or {})
        object.__setattr__(self, "origin", origin)
        for name, text in self._texts.items():
            if text.count("\n") + 1 != length:
                raise ValueError(f"session table text column {name!r} has the wrong length")
        builders: dict[str, Callable[[], Iterable[Any]]] = {}
        built: dict[str, tuple[Any, ...]] = {}
        rebuilt: dict[str, Rebuilt] = {}
        for name in Session._fields:
            value = columns[name]
            if isinstance(value, Rebuilt):
                rebuilt[name] = value
                continue
            if callable(value):
                builders[name] = value
                continue
            built[name] = tuple(value)
            if len(built[name]) != length:
                raise ValueError("session table columns differ in length")
        object.__setattr__(self, "_builders", builders)
        object.__setattr__(self, "_built", built)
        object.__setattr__(self, "_rebuilt", rebuilt)
        object.__setattr__(self, "_length", length)

    def _column(self, name: str) -> tuple[Any, ...]:
        values = self._built.get(name)
        if values is not None:
            return values
        again = self._rebuilt.get(name)
        if again is not None:  # built for this reader alone: no lock, nothing kept
            values = tuple(again.build())
            if len(values) != self._length:
                raise ValueError(f"rebuilt session column {name!r} has the wrong length")
            return values
        with _LAZY_LOCK:
            values = self._built.get(name)  # another thread may have built it meanwhile
            if values is None:
                values = tuple(self._builders[name]())
                if len(values) != self._length:
                    raise ValueError(f"lazily built session column {name!r} has the wrong length")
                self._built[name] = values
                del self._builders[name]  # the last one gone frees the raw columns the builders kept
        return values

    def __len__(self) -> int:
        return self._length

    def column_token(self, name: str) -> object:
        return self._rebuilt.get(name) or self._column(name)

    def count_of(self, name: str, value: object) -> int:
        again = self._rebuilt.get(name)
        return again.count(value) if again is not None else self._column(name).count(value)

    def counter_text(self, name: CounterName) -> Sequence[str]:
        text = self._texts.get(name)
        return text.split("\n") if text is not None else super().counter_text(name)

    def sharing(
        self,
        replaced: Mapping[str, Iterable[Any] | Callable[[], Iterable[Any]] | Rebuilt],
        texts: Mapping[str, str],
        origin: object,
    ) -> LazySessionTable:
        """A table with `replaced` columns and this table's other columns: the same objects, built or not.

        What a rewrite that changed only the counters parses to: the columns already built for one scrape
        (host/port splits, times, the views' layouts keyed on them) serve the next one as they are.
        """
        columns: dict[str, Iterable[Any] | Callable[[], Iterable[Any]] | Rebuilt] = dict(replaced)
        with _LAZY_LOCK:  # a column being built now is either built or still a builder, never neither
            for name in Session._fields:
                if name in columns:
                    continue
                if name in self._rebuilt:
                    columns[name] = self._rebuilt[name]
                else:
                    columns[name] = self._built[name] if name in self._built else self._builders[name]
        return LazySessionTable(self._length, columns, texts, origin)


# The lazy tables read their columns through _LazyColumn, which takes the place of the plain tables' slots.
for _name in Route._fields:
    setattr(LazyRouteTable, _name, _LazyColumn(_name))
for _name in Session._fields:
    setattr(LazySessionTable, _name, _LazyColumn(_name))


EMPTY_SESSIONS = SessionTable([()] * len(Session._fields))
EMPTY_ROUTES = RouteTable([()] * len(Route._fields))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one complete status text holds.

    Equality compares the tables column by column (the same answer as comparing the rows); the row
    caches take no part in it, nor in repr, which shows the rows as the row-based model always did.
    """

    kind: Literal["server", "client"]
    status_version: int  # 1, 2 or 3 (the client-mode file reports 1)
    product: str
    version: str  # "" when the format carries none (status-version 1, client mode)
    title: str
    updated_text: str
    updated_epoch: int | None
    session_table: SessionTable
    route_table: RouteTable
    global_stats: tuple[tuple[str, str], ...]
    client_stats: tuple[tuple[str, int], ...]
    skipped_lines: int  # unknown line types and ambiguous rows that were passed over
    # Rows built on first access by the slow paths (HTML page, extended metrics, tests).
    _session_rows: tuple[Session, ...] | None = field(default=None, init=False, repr=False, compare=False)
    _route_rows: tuple[Route, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def sessions(self) -> tuple[Session, ...]:
        rows = self._session_rows
        if rows is None:
            rows = self.session_table.rows()
            object.__setattr__(self, "_session_rows", rows)
        return rows

    @property
    def routes(self) -> tuple[Route, ...]:
        rows = self._route_rows
        if rows is None:
            rows = self.route_table.rows()
            object.__setattr__(self, "_route_rows", rows)
        return rows

    @property
    def session_count(self) -> int:
        return len(self.session_table)

    def __repr__(self) -> str:
        fields = (
            ("kind", self.kind),
            ("status_version", self.status_version),
            ("product", self.product),
            ("version", self.version),
            ("title", self.title),
            ("updated_text", self.updated_text),
            ("updated_epoch", self.updated_epoch),
            ("sessions", self.session_table.rows()),
            ("routes", self.route_table.rows()),
            ("global_stats", self.global_stats),
            ("client_stats", self.client_stats),
            ("skipped_lines", self.skipped_lines),
        )
        return "Snapshot(" + ", ".join(f"{name}={value!r}" for name, value in fields) + ")"

    def global_stat(self, name: str) -> str | None:
        for key, value in self.global_stats:
            if key == name:
                return value
        return None
