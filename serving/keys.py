"""API keys, roles and per-key rate limits: who may read what, and how fast.

A key is 32 random bytes (``ocdp_`` + URL-safe base64), shown once when created. The store keeps
only its SHA-256 (a key that leaks from a backup of the store is not a key) and a short id for
listing and revoking. Roles:

- ``agent``: customer lookup, profile, context and timeline (the people who take the call);
- ``marketer``: segments and their members, customer_ids only, no raw PII;
- ``admin``: everything.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from schemas.settings import Settings
from serving.problems import Forbidden, RateLimited, Unauthorized
from serving.store.base import ApiKeyRecord, ServingStore

KEY_PREFIX = "ocdp_"


class Role(StrEnum):
    AGENT = "agent"
    MARKETER = "marketer"
    ADMIN = "admin"


CUSTOMER_READERS = frozenset({Role.AGENT, Role.ADMIN})
SEGMENT_READERS = frozenset({Role.MARKETER, Role.ADMIN})


@dataclass(frozen=True)
class NewKey:
    key: str  # the secret: printed once, never stored
    key_id: str
    role: Role


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: ServingStore, role: Role, label: str | None = None) -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_hash = hash_key(key)
    key_id = key_hash[:12]
    store.add_key(key_id, key_hash, role.value, label)
    return NewKey(key=key, key_id=key_id, role=role)


class Authenticator:
    """Checks presented keys against the store, remembering active ones for ``ttl`` seconds.

    A request then costs no key query; a revoked key stops working within ``ttl``.
    """

    def __init__(
        self, store: ServingStore, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock
        self._active: dict[str, tuple[float, ApiKeyRecord]] = {}  # key hash -> (checked, record)

    def authenticate(self, key: str | None) -> ApiKeyRecord:
        """The active key record for a presented key, or ``Unauthorized``."""
        if not key:
            raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
        key_hash = hash_key(key)
        now = self._clock()
        checked, record = self._active.get(key_hash, (0.0, None))
        if record is None or now - checked > self.ttl:
            record = self.store.active_key(key_hash)
            if record is None:
                self._active.pop(key_hash, None)
                raise Unauthorized("this API key is unknown or revoked")
            self._active[key_hash] = (now, record)
        return record


def authorize(record: ApiKeyRecord, allowed: frozenset[Role]) -> None:
    if record.role not in allowed:
        roles = ", ".join(sorted(allowed))
        article = "an" if record.role[0] in "aeiou" else "a"
        raise Forbidden(f"{article} {record.role} key cannot read this; it needs one of: {roles}")


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, refilled at ``rate`` per second.

    In-process: right for one process (the MCP server, ``omnicdp serve --workers 1``). Several
    workers each holding one would let a key send N times its limit by landing on N of them;
    they share a :class:`SharedRateLimiter` instead.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key_id -> (tokens, updated at)
        self._lock = threading.Lock()

    def acquire(self, key_id: str) -> None:
        """Take one token for ``key_id``, or raise ``RateLimited`` saying how long to wait."""
        with self._lock:
            now = self._clock()
            tokens, updated = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                raise RateLimited(retry_after=_retry_after(tokens, self.rate))
            self._buckets[key_id] = (tokens - 1.0, now)


class SharedRateLimiter:
    """The same token buckets, kept in one SQLite file that every worker of a server uses.

    A token is taken under an exclusive lock on a file beside it (``flock``: a waiter sleeps in
    the kernel and wakes when the lock is released), so the workers take turns without ever
    meeting in SQLite, whose own busy wait sleeps 1 ms and more, and each reads the clock only
    once it holds the lock, so no one writes an older time over a newer one. Then one UPSERT
    refills, checks and takes: tens of microseconds, against a request's milliseconds. The
    clock is ``time.monotonic``, which on Linux counts from boot for every process alike. The
    files are local to one host: each server (host) behind a load balancer still grants a key
    its limit.
    """

    _TAKE = (
        "INSERT INTO bucket (key_id, tokens, updated) VALUES (:key, :burst - 1, :now) "
        "ON CONFLICT (key_id) DO UPDATE SET "
        "tokens = min(:burst, tokens + (:now - updated) * :rate) - 1, updated = :now "
        "WHERE min(:burst, tokens + (:now - updated) * :rate) >= 1 "
        "RETURNING tokens"
    )

    def __init__(
        self, path: Path, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._turn = threading.Lock()  # this process's threads; the lock file, the processes
        self._lock_file = path.with_name(path.name + ".lock").open("a")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = OFF")  # buckets need not outlive a crash
        with self._exclusive():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS bucket "
                "(key_id TEXT PRIMARY KEY, tokens REAL, updated REAL)"
            )

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._turn:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def acquire(self, key_id: str) -> None:
        """Take one token for ``key_id``, or raise ``RateLimited`` saying how long to wait."""
        with self._exclusive():
            now = self._clock()
            values = {"key": key_id, "burst": float(self.burst), "rate": self.rate, "now": now}
            if self._db.execute(self._TAKE, values).fetchall():
                return
            (tokens,) = self._db.execute(
                "SELECT min(:burst, tokens + (:now - updated) * :rate) FROM bucket "
                "WHERE key_id = :key",
                values,
            ).fetchone()
        raise RateLimited(retry_after=_retry_after(tokens, self.rate))


def _retry_after(tokens: float, rate: float) -> int:
    """Whole seconds until a bucket holding ``tokens`` has one."""
    return max(1, math.ceil((1.0 - tokens) / rate))


def rate_limiter(settings: Settings) -> RateLimiter | SharedRateLimiter:
    """The limiter ``settings`` ask for: shared through ``serving_rate_state`` when set (the
    workers of ``omnicdp serve --workers N``), else in-process."""
    rate, burst = settings.serving_rate_limit, settings.serving_rate_burst
    if settings.serving_rate_state is None:
        return RateLimiter(rate, burst)
    return SharedRateLimiter(settings.serving_rate_state, rate, burst)
