"""Check that two versions of the exporter package parse and render byte-identically.

    python bench/equivalence.py /path/to/other/checkout [--big]

`/path/to/other/checkout` holds an `exporter/` package (e.g. `git worktree add /tmp/base HEAD~1`). Each
side runs in its own process over the same inputs: every fixture in tests/fixtures/, generated status files
(v1, v2, v3; odd common names; 2.7 address prefixes; UNDEF rows) and torn variants of them (cut anywhere,
junk after END, old and new content mixed). For every input it records either the parse error (class,
reason, message) or digests of the Snapshot and of every view. Any difference is printed; exit 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _inputs(big: bool) -> list[tuple[str, bytes]]:
    sys.path.insert(0, HERE)
    from gen import StatusFile

    cases: list[tuple[str, bytes]] = []
    fixtures = os.path.join(ROOT, "tests", "fixtures")
    for folder, _, names in sorted(os.walk(fixtures)):
        for name in sorted(names):
            with open(os.path.join(folder, name), "rb") as handle:
                cases.append((os.path.relpath(os.path.join(folder, name), fixtures), handle.read()))
    rng = random.Random(1)
    small = StatusFile(300, seed=3, duplicates=0.2)
    for version, render in (("v3", small.v3), ("v1", small.v1)):
        old, new = render(0, now=1795756450), render(7, now=1795756460)
        cases.append((f"gen-{version}-300", old))
        cases.append((f"gen-{version}-300-crlf", old.replace(b"\n", b"\r\n")))
        for i in range(60):
            cut = rng.randrange(1, len(old))
            cases.append((f"gen-{version}-cut-{i}", old[:cut]))
            cases.append((f"gen-{version}-mixed-{i}", new[:cut] + old[cut:]))
            cases.append((f"gen-{version}-junk-{i}", old + old[cut:]))
            line_start = old.rfind(b"\n", 0, cut) + 1
            cases.append((f"gen-{version}-dropline-{i}", old[:line_start] + old[old.find(b"\n", cut) + 1 :]))
    v3 = small.v3(0, now=1795756450).decode()
    cases.append(("gen-v2-300", v3.replace("\t", ",").encode()))
    odd = [
        'quote"cn', "back\\slash", "uni\u00e9code", "emoji\U0001f600", "ctl\x01char", "del\x7fchar",
        "comma,cn", "UNDEF", "space cn", "<script>", "a&b", "tab", "x" * 200,
    ]  # fmt: skip
    lines = v3.split("\n")
    for i, name in enumerate(odd):
        mutated = list(lines)
        for j in range(3 + i, 3 + 300, 17):
            if mutated[j].startswith("CLIENT_LIST"):
                fields = mutated[j].split("\t")
                fields[1] = name
                if i % 3 == 0:
                    fields[2] = ["udp4:203.0.113.5:52137", "tcp4-server:192.0.2.10:47054",
                                 "udp6:[2001:db8::10]:51000", "2001:db8::1"][j % 4] if j % 2 else fields[2]  # fmt: skip
                if i % 4 == 1:
                    fields[3] = fields[4] = ""
                mutated[j] = "\t".join(fields)
        text = "\n".join(mutated)
        cases.append((f"gen-v3-odd-{i}", text.encode()))
        cases.append((f"gen-v2-odd-{i}", text.replace("\t", ",").encode()))
    # Counters that are digits but not what str(int) prints: leading zeros, non-ASCII decimal digits.
    for label, counter in (
        ("leading-zero", "00042"),
        ("zero", "0"),
        ("arabic-digits", "\u0664\u0662"),
        ("super", "\u00b2"),
    ):
        mutated = list(lines)
        for j in range(4, 300, 23):
            if mutated[j].startswith("CLIENT_LIST"):
                fields = mutated[j].split("\t")
                fields[5 + j % 2] = counter
                mutated[j] = "\t".join(fields)
        cases.append((f"gen-v3-counter-{label}", "\n".join(mutated).encode()))
    # status-version 1 sections at their edges: no stats, stats without lines, no routes, no route rows.
    v1 = small.v1(0, now=1795756450).decode()
    stats_at = v1.index("GLOBAL STATS")
    routes_at = v1.index("ROUTING TABLE")
    route_rows_at = v1.index("\n", routes_at + len("ROUTING TABLE\n")) + 1
    for label, text in (
        ("no-stats", v1[:stats_at] + "END\n"),
        ("empty-stats", v1[:stats_at] + "GLOBAL STATS\nEND\n"),
        ("blank-stat", v1[:stats_at] + "GLOBAL STATS\n\nEND\n"),
        ("no-routes", v1[:routes_at] + "ROUTING TABLE\n" + v1[stats_at:]),
        ("no-route-rows", v1[:route_rows_at] + v1[stats_at:]),
        ("routing-last", v1[:routes_at] + "ROUTING TABLE\nEND\n"),
    ):
        cases.append((f"gen-v1-{label}", text.encode()))
    unknown = "HEADER\tERRORS\tx\nFOO_BAR\tx\nGLOBAL_STATS"
    cases.append(("gen-v3-unknown-type", v3.replace("GLOBAL_STATS", unknown, 1).encode()))
    cases.append(("gen-v3-fragment", v3.replace("GLOBAL_STATS", "ENT_LIST\tx\nGLOBAL_STATS", 1).encode()))
    cases.append(("gen-v3-bad-count", v3.replace("\tUNDEF\t5\t", "\tUNDEF\tx5\t", 1).encode()))
    cases.append(("gen-v3-short-row", v3.replace("\tAES-256-GCM\n", "\n", 1).encode()))
    cases.append(("gen-v3-dup-cid", v3.replace("\tUNDEF\t5\t", "\tUNDEF\t4\t", 1).encode()))
    cases.append(("gen-v3-nul", v3.replace("GLOBAL", "\x00GLOBAL", 1).encode()))
    cases.append(("gen-v3-latin1", v3.replace("user000010", "us\xe9r", 1).encode("latin-1")))
    cases.append(("gen-v3-empty", b""))
    cases.append(("gen-v3-blank", b"\n\n"))
    medium = StatusFile(10_000)
    cases.append(("gen-v3-10000", medium.v3(3, now=1795756450)))
    cases.append(("gen-v1-10000", medium.v1(3, now=1795756450)))
    if big:
        cases.append(("gen-v3-100000", StatusFile(100_000).v3(5, now=1795756450)))
    return cases


def _dump(inputs_path: str) -> dict[str, str]:
    """Runs inside the package under test."""
    from exporter.config import SESSION_LABELS, MetricsConfig

    try:
        from exporter.state import build_state
    except ImportError:  # a checkout from before exporter/state.py
        from exporter.hub import build_state  # type: ignore[attr-defined,no-redef]
    from exporter.parser import StatusParseError, parse_status
    from exporter.sources.base import Reading
    from exporter.views.metrics import render_metrics
    from exporter.views.pages import render_sessions_page
    from exporter.views.sessions import render_sessions_json

    def digest(data: object) -> str:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        assert isinstance(data, bytes)
        return hashlib.sha256(data).hexdigest()[:24]

    configs = [
        MetricsConfig(),
        MetricsConfig(per_client=False),
        MetricsConfig(include=("user0*", "*laptop*"), exclude=("user00001*",)),
        MetricsConfig(extended=True, kumina_compat=True, session_labels=tuple(SESSION_LABELS)),
        MetricsConfig(extended=True, kumina_compat=True, exclude=("user00001*",)),
    ]
    with open(inputs_path, "rb") as handle:
        cases = json.loads(handle.read())
    out: dict[str, str] = {}
    for name, hexdata in cases:
        data = bytes.fromhex(hexdata)
        for protocol in ("", "tcp", "udp"):
            key = f"{name} [{protocol}]"
            try:
                snapshot = parse_status(data, protocol)
            except StatusParseError as exc:
                out[key] = f"{type(exc).__name__} {exc.reason} {exc.message}"
                continue
            parts = [digest(repr(snapshot))]
            readings = tuple(
                Reading(n, "file", "/x", p, snapshot, 1795756450.0, True, "", 1, ())
                for n, p in (("a", protocol or "udp"), ("b", "tcp"))
            )
            for count in (1, 2):
                state = build_state('srv"name', readings[:count], 1795756451.0, 180)
                parts += [digest(render_metrics(state, config)) for config in configs]
                parts.append(digest(render_sessions_json(state)))
                parts.append(digest(render_sessions_page(state)))
            out[key] = " ".join(parts)
    return out


def main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "--dump":
        json.dump(_dump(sys.argv[2]), sys.stdout)
        return 0
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    other = os.path.abspath(sys.argv[1])
    big = "--big" in sys.argv
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        inputs = os.path.join(scratch, "inputs.json")
        cases = _inputs(big)
        with open(inputs, "w") as handle:
            json.dump([(name, data.hex()) for name, data in cases], handle)
        for root in (ROOT, other):
            env = {**os.environ, "PYTHONPATH": root}
            done = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--dump", inputs],
                cwd=scratch, env=env, capture_output=True, check=True,
            )  # fmt: skip
            results.append(json.loads(done.stdout))
    mine, theirs = results
    differences = [key for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)]
    for key in differences[:40]:
        print(f"DIFF {key}\n  here:  {mine.get(key)}\n  other: {theirs.get(key)}")
    errors = sum(1 for v in mine.values() if "Error" in v)
    print(f"{len(mine)} cases ({errors} parse errors), {len(differences)} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
