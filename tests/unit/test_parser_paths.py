"""The parser's text-block paths against its line-by-line code, which is the reference.

CRLF line ends send a text down the line-by-line code (the management interface's replies come that way),
so the same text with both line ends must parse to the same snapshot, or fail with the same error.
"""

from __future__ import annotations

import pytest

from exporter.model import Snapshot
from exporter.parser import StatusParseError, parse_status
from tests.support.common import CAPTURED, FIXTURES

SERVER_FILES = sorted(
    p for p in FIXTURES.glob("*/*") if p.suffix in (".log", ".status") and "client-status" not in p.name
)
V1 = (CAPTURED / "server-udp-status-v1.log").read_text()
V3 = (CAPTURED / "server-udp-status-v3.log").read_text()


def outcome(text: str) -> Snapshot | tuple[str, str, str]:
    try:
        return parse_status(text, "udp")
    except StatusParseError as exc:
        return (type(exc).__name__, exc.reason, str(exc))


def both_ways(text: str) -> tuple[Snapshot | tuple[str, str, str], Snapshot | tuple[str, str, str]]:
    return outcome(text), outcome(text.replace("\n", "\r\n"))


def v1_edges() -> dict[str, str]:
    stats = V1.index("GLOBAL STATS")
    routing = V1.index("ROUTING TABLE")
    route_rows = V1.index("\n", routing + len("ROUTING TABLE\n")) + 1
    first_row = V1.index("\n", V1.index("Common Name")) + 1
    return {
        "no stats": V1[:stats] + "END\n",
        "stats without lines": V1[:stats] + "GLOBAL STATS\nEND\n",
        "a blank stat line": V1[:stats] + "GLOBAL STATS\n\nEND\n",
        "no routing header": V1[:routing] + "ROUTING TABLE\n" + V1[stats:],
        "no route rows": V1[:route_rows] + V1[stats:],
        "routing table last": V1[:routing] + "ROUTING TABLE\nEND\n",
        "no clients": V1[:first_row] + V1[routing:],
        "stats before routes": V1[:routing] + "GLOBAL STATS\n" + V1[routing:stats] + "END\n",
        "no routing table": V1[:routing] + V1[stats:],
        "comma in a common name": V1.replace("client2,", "client,2,"),
        "torn client row": V1.replace("client1,127.0.0.1:39394,", "39394,", 1),
        "torn route row": V1.replace("10.81.0.4,client2,", "0.4,client2,", 1),
        "route row with a comma": V1.replace("10.81.0.4,client2,", "10.81.0.4,client,2,", 1),
        # One row a field short, another a field long: the comma total is right, the rows are not.
        "short and long route rows": V1.replace("10.81.0.3,client1,", "client1,", 1).replace(
            "10.81.0.4,client2,", "10.81.0.4,client2,x,", 1
        ),
        "no END": V1[: V1.rindex("END")],
        "junk after END": V1 + "client1,127.0.0.1:1,1,1,2026-11-27 05:13:48\n",
    }


def v3_edges() -> dict[str, str]:
    return {
        "no route rows": "\n".join(line for line in V3.split("\n") if not line.startswith("ROUTING_TABLE\t")),
        "torn client row": V3.replace("CLIENT_LIST\tclient2\t", "ent2\t", 1),
        "two client rows on one line": V3.replace("\nCLIENT_LIST\tclient2\t", "\tCLIENT_LIST\tclient2\t", 1),
        "a common name that is the row type": V3.replace("CLIENT_LIST\tclient2\t", "CLIENT_LIST\tCLIENT_LIST\t", 1),
        "torn route row": V3.replace("ROUTING_TABLE\t10.81.0.3\t", "TABLE\t10.81.0.3\t", 1),
        "short and long route rows": V3.replace("ROUTING_TABLE\t10.81.0.3\t", "ROUTING_TABLE\t", 1).replace(
            "ROUTING_TABLE\t10.81.0.4\t", "ROUTING_TABLE\t10.81.0.4\tx\t", 1
        ),
        "client row after the routes": V3.replace(
            "GLOBAL_STATS",
            V3[V3.index("CLIENT_LIST\t") : V3.index("\n", V3.index("CLIENT_LIST\t")) + 1] + "GLOBAL_STATS",
            1,
        ),
    }


@pytest.mark.parametrize("path", SERVER_FILES, ids=lambda p: p.name)
def test_every_fixture_parses_alike_both_ways(path: object) -> None:
    text = FIXTURES.joinpath(str(path)).read_text()
    fast, lines = both_ways(text)
    assert fast == lines


@pytest.mark.parametrize("label", sorted(v1_edges()))
def test_status_version_1_edges_parse_alike_both_ways(label: str) -> None:
    fast, lines = both_ways(v1_edges()[label])
    assert fast == lines


@pytest.mark.parametrize("label", sorted(v3_edges()))
def test_status_version_3_edges_parse_alike_both_ways(label: str) -> None:
    fast, lines = both_ways(v3_edges()[label])
    assert fast == lines
