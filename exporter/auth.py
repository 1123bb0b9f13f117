"""HTTP basic auth for every path but the health endpoints, with password checks that cannot starve
serving.

A bcrypt check costs milliseconds to seconds of CPU by design. They run in a small pool of their own
(PASSWORD_WORKERS threads, at most PASSWORD_QUEUE more waiting), never in the pool that renders
responses; a request that finds the queue full is refused at once with 429, so a flood of wrong
passwords costs the attacker a connection each and good scrapes nothing. Refusals of given
credentials are answered after a short pause, so that a guessing loop cannot turn the refusals
themselves into load. Good credentials are remembered (by a salted SHA-256 of user and password, in a
bounded set) so that a scraper pays bcrypt once, not per scrape. The users are replaced as a whole
on reload, forgetting what was remembered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import queue
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import bcrypt
from starlette.types import ASGIApp, Receive, Scope, Send

REALM = "openvpn-exporter"
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})
BCRYPT_HASH = re.compile(r"^\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}$")
# Successful checks remembered so that a scrape every few seconds does not cost a bcrypt each time.
AUTH_CACHE_SIZE = 1024
# bcrypt releases the GIL: two checks at a time leave the rest of the process its CPU on 2 cores.
PASSWORD_WORKERS = 2
PASSWORD_QUEUE = 8
# A refusal (wrong password, or checks busy) is answered after this pause: it costs the server a timer,
# and a loop of guesses goes at most this fast instead of as fast as the event loop can refuse.
REFUSAL_DELAY = 0.25


@dataclass(frozen=True)
class _Users:
    """One generation of the configured users, with its own salt and cache of good credentials."""

    hashes: dict[str, bytes]
    dummy: bytes  # checked for an unknown name, so that it costs what a known one does
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    good: set[bytes] = field(default_factory=set)


def _generation(users: dict[str, bytes]) -> _Users:
    cost = max((int(_cost(h)) for h in users.values()), default=10)
    # A well-formed hash of that cost, made without hashing (gensalt is cheap whatever the cost):
    # at cost 31 a hashpw here would take days.
    return _Users(dict(users), bcrypt.gensalt(cost) + b"." * 31)


def _cost(hashed: bytes) -> str:
    match = BCRYPT_HASH.match(hashed.decode())
    return match.group(1) if match else "10"


class _CheckPool:
    """A few daemon threads that run password checks. Not a ThreadPoolExecutor: its threads are joined
    at exit, and a check in progress (seconds at a high cost) would hold up a SIGTERM."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._jobs: queue.SimpleQueue[tuple[Callable[[], bool], asyncio.Future[bool]]] = queue.SimpleQueue()
        self._started = False
        self._lock = threading.Lock()

    async def run(self, check: Callable[[], bool]) -> bool:
        with self._lock:
            if not self._started:
                for i in range(self._workers):
                    threading.Thread(target=self._work, name=f"password-check-{i}", daemon=True).start()
                self._started = True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._jobs.put((check, future))
        return await future

    def _work(self) -> None:
        while True:
            check, future = self._jobs.get()
            try:
                result = check()
            except Exception:  # a check fails closed, whatever went wrong
                result = False
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                future.get_loop().call_soon_threadsafe(_settle, future, result)


def _settle(future: asyncio.Future[bool], result: bool) -> None:
    if not future.done():  # the request may have gone away
        future.set_result(result)


class Passwords:
    """The users and the limiter of their password checks; `replace` swaps the users on reload."""

    def __init__(self, users: dict[str, bytes]) -> None:
        self._users = _generation(users)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(PASSWORD_WORKERS + PASSWORD_QUEUE)
        self._pool = _CheckPool(PASSWORD_WORKERS)
        self.refused = 0  # checks turned away because the queue was full

    @property
    def enabled(self) -> bool:
        return bool(self._users.hashes)

    def replace(self, users: dict[str, bytes]) -> None:
        self._users = _generation(users)

    def _key(self, users: _Users, user: bytes, password: bytes) -> bytes:
        return hashlib.sha256(users.salt + len(user).to_bytes(4, "big") + user + password).digest()

    async def accept(self, user: bytes, password: bytes) -> bool | None:
        """True or False, or None when the checks are busy and this one is refused without running."""
        users = self._users
        key = self._key(users, user, password)
        with self._lock:
            if key in users.good:
                return True
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            return None
        try:
            ok = await self._pool.run(lambda: self.verify(user, password, users))
        finally:
            self._slots.release()
        if ok:
            with self._lock:
                if len(users.good) >= AUTH_CACHE_SIZE:
                    users.good.clear()  # bounded: a flood of distinct good logins cannot grow memory
                users.good.add(key)
        return ok

    def verify(self, user: bytes, password: bytes, users: _Users | None = None) -> bool:
        """The uncached check: constant-time name match, then exactly one bcrypt whatever the name."""
        users = users or self._users
        hashed, found = users.dummy, False
        for name, candidate in users.hashes.items():
            if hmac.compare_digest(name.encode(), user):
                hashed, found = candidate, True
        try:
            matches = bcrypt.checkpw(password, hashed)
        except ValueError:
            return False
        return found and matches


class BasicAuth:
    """The middleware: health endpoints open, every other path needs a configured user's password.
    With no users configured (a web config without basic_auth_users), requests pass through, so that
    a reload can add users to a running server."""

    def __init__(self, app: ASGIApp, users: dict[str, bytes] | Passwords) -> None:
        self.app = app
        self.passwords = users if isinstance(users, Passwords) else Passwords(users)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUTHENTICATED_PATHS or not self.passwords.enabled:
            await self.app(scope, receive, send)
            return
        credentials = _credentials(scope)
        verdict = None if credentials is None else await self.passwords.accept(*credentials)
        if verdict:
            await self.app(scope, receive, send)
            return
        status, body = (401, b"Unauthorized\n") if verdict is not None or credentials is None else (429, b"Busy\n")
        headers = [
            (b"www-authenticate", f'Basic realm="{REALM}"'.encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 429:
            headers.append((b"retry-after", b"1"))
        if credentials is not None:
            await asyncio.sleep(REFUSAL_DELAY)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _credentials(scope: Scope) -> tuple[bytes, bytes] | None:
    header = b""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            header = value
            break
    scheme, _, encoded = header.strip().partition(b" ")
    if scheme.lower() != b"basic" or not encoded or len(encoded) > 1024:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    # bcrypt looks at 72 bytes at most; a longer password must not be accepted for its prefix.
    if len(password) > 72:
        return None
    return user, password
