"""exporter.auth: password checks in a limiter of their own, so that a flood of wrong passwords is
refused fast and never holds up a scraper whose credentials are already known to be good."""

from __future__ import annotations

import asyncio
import base64
import threading

import bcrypt
import pytest
from starlette.types import Receive, Scope, Send

from exporter import auth as authmodule
from exporter.auth import PASSWORD_QUEUE, PASSWORD_WORKERS, BasicAuth, Passwords

GOOD = b"correct horse"
HASH = bcrypt.hashpw(GOOD, bcrypt.gensalt(4))


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"data"})


async def status_of(app: BasicAuth, user: bytes, password: bytes) -> int:
    token = base64.b64encode(user + b":" + password)
    scope = {"type": "http", "path": "/metrics", "headers": [(b"authorization", b"Basic " + token)]}
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))  # type: ignore[call-overload]

    await app(scope, receive, send)  # type: ignore[arg-type]
    return statuses[0]


def test_a_full_queue_refuses_at_once_and_known_good_credentials_still_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    real = bcrypt.checkpw

    def held(password: bytes, hashed: bytes) -> bool:
        if password != GOOD:
            gate.wait(30)  # a wrong password that takes as long as the test wants
        return real(password, hashed)

    monkeypatch.setattr(authmodule.bcrypt, "checkpw", held)
    app = BasicAuth(_ok, Passwords({"prom": HASH}))

    async def scenario() -> None:
        assert await status_of(app, b"prom", GOOD) == 200  # checked once, remembered
        slots = PASSWORD_WORKERS + PASSWORD_QUEUE
        flood = [asyncio.create_task(status_of(app, b"prom", b"wrong")) for _ in range(slots)]
        while app.passwords._slots._value > 0:  # every slot taken by the flood
            await asyncio.sleep(0.01)
        # The checks are all busy: one more is refused without waiting for them ...
        assert await asyncio.wait_for(status_of(app, b"prom", b"wrong again"), 5) == 429
        assert await asyncio.wait_for(status_of(app, b"other", GOOD), 5) == 429
        assert app.passwords.refused == 2
        # ... and a scraper whose credentials were good before passes without a check.
        assert await asyncio.wait_for(status_of(app, b"prom", GOOD), 5) == 200
        gate.set()
        assert await asyncio.gather(*flood) == [401] * slots
        assert await status_of(app, b"prom", b"wrong") == 401

    try:
        asyncio.run(scenario())
    finally:
        gate.set()


def test_replacing_the_users_forgets_remembered_credentials() -> None:
    passwords = Passwords({"prom": HASH})
    app = BasicAuth(_ok, passwords)
    other = bcrypt.hashpw(b"another", bcrypt.gensalt(4))

    async def scenario() -> None:
        assert await status_of(app, b"prom", GOOD) == 200
        passwords.replace({"prom": other})
        assert await status_of(app, b"prom", GOOD) == 401
        assert await status_of(app, b"prom", b"another") == 200
        passwords.replace({})
        assert await status_of(app, b"anyone", b"anything") == 200  # no users: no auth

    asyncio.run(scenario())


def test_the_dummy_hash_for_unknown_names_costs_what_the_users_cost_without_hashing_at_start() -> None:
    costly = b"$2b$31$" + HASH[7:]  # a check would take days; building the dummy must not
    passwords = Passwords({"prom": costly})
    assert passwords._users.dummy.startswith(b"$2b$31$")
    assert len(passwords._users.dummy) == 60
