"""Parse OpenVPN status text into a Snapshot. Pure: no I/O, no clock.

Two parsers behind one entry point: reference.py reads every format line by line and is the specification
of the formats; fast.py reads the usual server texts column by column and returns the same snapshot or
declines. What both need (field rules, header layouts, the END and torn-read checks) is in common.py.

The only exception that leaves parse_status is StatusParseError (TornStatusError for the torn cases):
whatever the bytes, the caller gets a Snapshot or that.
"""

from __future__ import annotations

from exporter.model import Snapshot
from exporter.parser.common import (
    StatusParseError,
    TornStatusError,
    frame,
    normalise_time,
    split_real_address,
)
from exporter.parser.fast import parse_fast
from exporter.parser.reference import parse_reference

__all__ = [
    "StatusParseError",
    "TornStatusError",
    "normalise_line_ends",
    "normalise_time",
    "parse_reference",
    "parse_status",
    "split_real_address",
]


def parse_status(data: bytes | str, default_protocol: str = "", previous: Snapshot | None = None) -> Snapshot:
    """Parse one complete status text. `default_protocol` labels sessions whose address has no prefix.

    `previous`, the last snapshot of the same source, lets a rewrite that changed only the byte counters
    share its other columns; the result is the same as without it.
    """
    try:
        text = normalise_line_ends(data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data)
        form, last = frame(text)
        snapshot = parse_fast(text, form, last, default_protocol, previous.session_table if previous else None)
        return snapshot if snapshot is not None else parse_reference(text, default_protocol)
    except StatusParseError:
        raise
    except Exception as exc:  # the promise: nothing but StatusParseError escapes, whatever the input
        raise StatusParseError("malformed", f"unparseable status text ({type(exc).__name__})") from exc


def normalise_line_ends(text: str) -> str:
    """CRLF (a status file written on Windows, a management reply kept as sent) reads as LF: every CR at the
    end of a line goes."""
    if "\r" not in text:
        return text
    return "\n".join([line.rstrip("\r") for line in text.split("\n")])
