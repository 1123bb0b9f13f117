"""Staleness transitions: one log line when a source goes stale and one when it is fresh again.

A missing or torn file is logged by its source when the read fails. A file that OpenVPN simply stops
rewriting (the server died and left it behind) reads fine every time, so nothing else would say why
`probe_success` dropped. Only the transitions are logged, never once per scrape: the caller keeps the set of
stale sources between refreshes and hands it back in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from exporter.sources.base import Reading

log = logging.getLogger("openvpn_exporter")


@dataclass(frozen=True, slots=True)
class FreshnessEvent:
    level: int
    message: str


def stale_transitions(
    stale: frozenset[str], readings: Iterable[Reading], now: float, stale_after: float
) -> tuple[frozenset[str], tuple[FreshnessEvent, ...]]:
    """The names of the sources stale now, and an event for each that changed since `stale`.

    A source is stale when it has been read (it has a snapshot and an update time) but that update is older
    than `stale_after`. A source never read has no age to report: its read failure is logged where it
    happens. A source that is no longer configured (a glob match that went away) is simply forgotten.
    """
    now_stale: set[str] = set()
    events: list[FreshnessEvent] = []
    for reading in readings:
        if reading.snapshot is None or reading.last_update is None:
            continue
        age = max(0.0, now - reading.last_update)
        if not reading.is_fresh(now, stale_after):
            now_stale.add(reading.name)
            if reading.name not in stale:
                events.append(
                    FreshnessEvent(
                        logging.WARNING,
                        f"source {reading.name}: {reading.target} is stale, last updated {age:.0f} s ago"
                        f" (stale_after {stale_after:g} s); its sessions are not reported until OpenVPN"
                        " writes it again",
                    )
                )
        elif reading.name in stale:
            message = f"source {reading.name}: {reading.target} is fresh again ({age:.0f} s old)"
            events.append(FreshnessEvent(logging.INFO, message))
    return frozenset(now_stale), tuple(events)


def emit(events: Iterable[FreshnessEvent]) -> None:
    for event in events:
        log.log(event.level, "%s", event.message)
