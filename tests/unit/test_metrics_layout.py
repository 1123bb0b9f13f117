"""One MetricsView across successive states: the client layout it keeps never changes what it renders."""

from __future__ import annotations

from exporter.config import MetricsConfig
from exporter.model import Snapshot
from exporter.parser import parse_status
from exporter.sources.base import Reading
from exporter.state import ServerState, build_state
from exporter.views.metrics import MetricsView, render_metrics
from tests.support.common import CAPTURED

TEXT = (CAPTURED / "server-udp-status-v3.log").read_text()


def state_of(snapshot: Snapshot, generation: int) -> ServerState:
    reading = Reading("src", "file", "x", "udp", snapshot, 1.0, True, "", generation, ())
    return build_state("openvpn-server", (reading,), 1.0, 0)


def with_rows(text: str, edit: dict[str, str]) -> str:
    """`text` with the client rows' common names replaced as `edit` says and their counters grown."""
    lines = []
    for line in text.split("\n"):
        fields = line.split("\t")
        if fields[0] == "CLIENT_LIST":
            fields[1] = edit.get(fields[1], fields[1])
            fields[5] = str(int(fields[5]) * 3 + 1)
        lines.append("\t".join(fields))
    return "\n".join(lines)


def test_successive_states_render_as_a_fresh_view_does() -> None:
    names = [line.split("\t")[1] for line in TEXT.split("\n") if line.startswith("CLIENT_LIST\t")]
    assert len(names) >= 3
    texts = [
        TEXT,
        with_rows(TEXT, {}),  # counters only: the layout is reused
        with_rows(TEXT, {names[0]: "zz-last"}),  # a name changes: the order changes
        with_rows(TEXT, {names[1]: names[0]}),  # two sessions now share a label: summed
        with_rows(TEXT, {names[0]: 'quote"back\\slash'}),  # a label that needs escaping
        TEXT,
    ]
    view = MetricsView(MetricsConfig())
    previous = None
    for generation, text in enumerate(texts):
        snapshot = parse_status(text, "udp", previous)
        state = state_of(snapshot, generation)
        assert view.render(state) == render_metrics(state, MetricsConfig())
        previous = snapshot


def test_shared_label_sums_and_reused_layout_follow_the_counters() -> None:
    names = [line.split("\t")[1] for line in TEXT.split("\n") if line.startswith("CLIENT_LIST\t")]
    shared = with_rows(TEXT, {names[1]: names[0]})
    view = MetricsView(MetricsConfig())
    first = parse_status(shared, "udp")
    view.render(state_of(first, 1))
    grown = with_rows(shared, {})
    second = parse_status(grown, "udp", first)
    text = view.render(state_of(second, 2))
    table = second.session_table
    total = sum(rx for cn, rx in zip(table.common_name, table.bytes_received, strict=True) if cn == names[0])
    assert f'ovpn_bytes_in_total{{client="{names[0]}_udp"}} {total}\n' in text
    assert text.count(f'client="{names[0]}_udp"') == 2  # one series in each direction
