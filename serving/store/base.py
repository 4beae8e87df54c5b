"""What every serving store shares: its tables, its records, and the one interface
(``ServingStore``) with all of its SQL. A backend (``serving.store.sqlite``,
``serving.store.postgres``) only says how to connect, how to spell a query parameter and how to
bulk-load rows.

Publishing writes every table of a new *generation* (``g<N>_customer``, ``g<N>_lookup_key``...)
and moves the pointer row in ``serving_state`` to it in the same transaction, so readers see the
previous generation until the commit and the new one after it: never a half-published state, and
a publish that fails leaves nothing behind. A reader reads the pointer once (``current()``) and
then reads that generation with as many statements as it needs. The previous generation is kept
for readers that read the pointer just before a switch; the one before it is dropped by the next
publish.

Between publishes, the current generation changes in place in two ways only, each one
transaction over whole customers: erasure (``erase_customers``) and the micro-batch pipeline's
``upsert_customers``, which replaces every row of some customers in ``CUSTOMER_TABLES`` so the
agent sees new activity within seconds instead of at the next publish. Each part of an answer
(a customer row, a lookup's matches, a page of events) is one statement, and a statement sees
committed transactions only (WAL in SQLite, a snapshot per statement in PostgreSQL), so it sees
a customer wholly before or wholly after an update, never half of it.

API keys live in ``api_keys``, outside any generation: publishing never touches them.
"""

from __future__ import annotations

import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_BATCH_ROWS = 10_000
_ERASE_BATCH = 500  # ids per DELETE: twice that stays under SQLite's 999 bound variables
_NEWEST = 2**62  # a seq above every real one: "no cursor" in timeline paging
#: the largest BIGINT, and so the largest cursor a query can bind (SQLite's driver raises
#: OverflowError above it): the API and the MCP tools declare it as the bound of ``before``
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class StoreTable:
    """A table of every generation; ``key`` gets a unique index once the rows are loaded."""

    name: str
    columns_sql: str
    key: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(part.split()[0] for part in self.columns_sql.split(","))


# Nested values (profile, context, timeline event) are JSON text, built by the publish job.
CUSTOMER = StoreTable(
    "customer",
    "customer_id TEXT, display_name TEXT, tier TEXT, open_case_count BIGINT, "
    "profile TEXT, context TEXT",
    ("customer_id",),
)
LOOKUP_KEY = StoreTable(
    "lookup_key", "kind TEXT, value TEXT, customer_id TEXT", ("kind", "value", "customer_id")
)
RETIRED_ID = StoreTable(
    "retired_id",
    "retired_id TEXT, surviving_id TEXT, changed_at TEXT, reason TEXT",
    ("retired_id",),
)
TIMELINE = StoreTable(
    "timeline", "customer_id TEXT, seq BIGINT, event TEXT", ("customer_id", "seq")
)
SEGMENT = StoreTable(
    "segment", "name TEXT, members BIGINT, consent_purpose TEXT, as_of TEXT", ("name",)
)
SEGMENT_MEMBER = StoreTable(
    "segment_member",
    "segment TEXT, customer_id TEXT, consent_purpose TEXT",
    ("segment", "customer_id"),
)
GENERATION_TABLES = (CUSTOMER, LOOKUP_KEY, RETIRED_ID, TIMELINE, SEGMENT, SEGMENT_MEMBER)
# A customer's own rows: what ``upsert_customers`` replaces between publishes. Segment
# membership and retired ids are decided over all customers, so they wait for the next publish.
CUSTOMER_TABLES = (CUSTOMER, LOOKUP_KEY, TIMELINE)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS serving_state (id INTEGER PRIMARY KEY, generation BIGINT, "
    "previous_generation BIGINT, published_at TEXT)",
    "CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, key_hash TEXT UNIQUE NOT NULL, "
    "role TEXT NOT NULL, label TEXT, created_at TEXT NOT NULL, revoked_at TEXT)",
)


class NotPublishedError(RuntimeError):
    """The store has no generation yet, so there is nothing to update in place."""


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    role: str
    label: str | None
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class Upserted:
    """What ``upsert_customers`` did: the generation it changed (None: none, it was told to
    leave that generation alone) and the rows it wrote per table."""

    generation: int | None
    rows: dict[str, int]


@dataclass(frozen=True)
class CustomerRow:
    customer_id: str
    display_name: str | None
    tier: str | None
    open_case_count: int | None
    profile: str | None
    context: str | None


@dataclass(frozen=True)
class Match:
    customer_id: str
    display_name: str | None
    tier: str | None
    open_case_count: int | None


def _holdable(params: Sequence[Any]) -> bool:
    """Whether a store can hold every text in ``params``. PostgreSQL's text cannot hold a NUL
    character (the driver refuses to send one), so no stored value has one: a read for a value
    with one finds nothing in any store, without asking the database."""
    return not any(isinstance(p, str) and "\x00" in p for p in params)


class Generation:
    """Reads of one published generation; its tables do not change while it is read."""

    def __init__(self, store: ServingStore, number: int) -> None:
        self.store = store
        self.number = number

    def _t(self, table: StoreTable) -> str:
        return f"g{self.number}_{table.name}"

    def customer(self, customer_id: str) -> CustomerRow | None:
        rows = self.store.query(
            f"SELECT {', '.join(CUSTOMER.columns)} FROM {self._t(CUSTOMER)} WHERE customer_id = ?",
            (customer_id,),
        )
        return CustomerRow(*rows[0]) if rows else None

    def surviving_id(self, retired_id: str) -> str | None:
        """The id a retired customer_id lives on as today (merge chains are resolved)."""
        rows = self.store.query(
            f"SELECT surviving_id FROM {self._t(RETIRED_ID)} WHERE retired_id = ?", (retired_id,)
        )
        return rows[0][0] if rows else None

    def lookup(self, kind: str, value: str) -> list[Match]:
        rows = self.store.query(
            f"SELECT c.customer_id, c.display_name, c.tier, c.open_case_count "
            f"FROM {self._t(LOOKUP_KEY)} k JOIN {self._t(CUSTOMER)} c "
            "ON c.customer_id = k.customer_id WHERE k.kind = ? AND k.value = ? "
            "ORDER BY c.customer_id",
            (kind, value),
        )
        return [Match(*r) for r in rows]

    def timeline(self, customer_id: str, limit: int, before_seq: int | None) -> list[str]:
        """Event JSON texts, newest first, older than ``before_seq`` when paging."""
        rows = self.store.query(
            f"SELECT event FROM {self._t(TIMELINE)} WHERE customer_id = ? AND seq < ? "
            "ORDER BY seq DESC LIMIT ?",
            (customer_id, before_seq if before_seq is not None else _NEWEST, limit),
        )
        return [r[0] for r in rows]

    def segments(self) -> list[tuple[str, int, str, str]]:
        return self.store.query(
            f"SELECT name, members, consent_purpose, as_of FROM {self._t(SEGMENT)} ORDER BY name",
            (),
        )

    def segment(self, name: str) -> tuple[str, int, str, str] | None:
        rows = self.store.query(
            f"SELECT name, members, consent_purpose, as_of FROM {self._t(SEGMENT)} WHERE name = ?",
            (name,),
        )
        return rows[0] if rows else None

    def segment_members(self, name: str, limit: int, after: str | None) -> list[tuple[str, str]]:
        """Members in customer_id order, after ``after`` when paging (keyset, no OFFSET scans)."""
        return self.store.query(
            f"SELECT customer_id, consent_purpose FROM {self._t(SEGMENT_MEMBER)} "
            "WHERE segment = ? AND customer_id > ? ORDER BY customer_id LIMIT ?",
            (name, after or "", limit),
        )


class Publication:
    """The tables of a generation being written; ``ServingStore.publish`` switches to it."""

    def __init__(self, store: ServingStore, connection: Any, number: int) -> None:
        self._store = store
        self._connection = connection
        self.number = number
        self.rows: dict[str, int] = {t.name: 0 for t in GENERATION_TABLES}

    def load(self, table: StoreTable, rows: Iterable[Sequence[Any]]) -> int:
        """Append rows (tuples in ``table.columns`` order) in batches; memory stays one batch."""
        loaded = self._store._append(self._connection, self.number, table, rows)
        self.rows[table.name] += loaded
        return loaded


class ServingStore(ABC):
    """What the API, the MCP tools and the publish job need from a store, whatever the engine."""

    #: how a query parameter is written in this backend's SQL
    placeholder = "?"

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._pointer: tuple[float, Generation | None] = (0.0, None)
        with self.writer() as connection:
            for statement in _SCHEMA:
                self._execute(connection, statement)

    # --- backend specifics ---------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection in autocommit mode."""

    @abstractmethod
    @contextmanager
    def writer(self) -> Iterator[Any]:
        """A connection inside one transaction that only one writer holds at a time."""

    @abstractmethod
    def bulk_insert(
        self, connection: Any, table: str, columns: Sequence[str], rows: list[Sequence[Any]]
    ) -> None:
        """Append rows to ``table`` the fastest way the engine has."""

    def _is_usable(self, connection: Any) -> bool:
        return True

    # --- shared machinery --------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def _execute(self, connection: Any, text: str, params: Sequence[Any] = ()) -> Any:
        return connection.execute(self._sql(text), params)

    def _reader(self) -> Any:
        """This thread's read connection: opened once, reopened if the engine dropped it."""
        connection = getattr(self._local, "connection", None)
        if connection is None or not self._is_usable(connection):
            connection = self._local.connection = self._connect()
        return connection

    def query(self, text: str, params: Sequence[Any]) -> list[tuple]:
        """Rows of a read; none, without a round trip, when a parameter holds what no stored
        value can (``_holdable``)."""
        if not _holdable(params):
            return []
        return list(self._execute(self._reader(), text, params).fetchall())

    def _append(
        self, connection: Any, generation: int, table: StoreTable, rows: Iterable[Sequence[Any]]
    ) -> int:
        """Append rows to one generation's table in batches of ``_BATCH_ROWS``; rows appended.

        Memory stays one batch whatever ``rows`` streams from.
        """
        name = f"g{generation}_{table.name}"
        iterator = iter(rows)
        appended = 0
        while batch := list(itertools.islice(iterator, _BATCH_ROWS)):
            self.bulk_insert(connection, name, table.columns, batch)
            appended += len(batch)
        return appended

    def close(self) -> None:
        """Close this thread's read connection (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    @property
    def display_url(self) -> str:
        """The URL without its password, fit for logs and summaries."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))

    # --- generations -------------------------------------------------------------------------

    def current(self, max_age: float = 0.0) -> Generation | None:
        """The published generation to read, or None before the first publish.

        ``max_age`` lets a busy reader reuse a pointer read up to that many seconds ago instead
        of asking again: safe, since the generation it names stays readable until the publish
        after next.
        """
        read_at, generation = self._pointer
        now = time.monotonic()
        if generation is None or now - read_at > max_age:
            rows = self.query("SELECT generation FROM serving_state WHERE id = 1", ())
            generation = Generation(self, rows[0][0]) if rows else None
            self._pointer = (now, generation)
        return generation

    def published_at(self) -> str | None:
        rows = self.query("SELECT published_at FROM serving_state WHERE id = 1", ())
        return rows[0][0] if rows else None

    @contextmanager
    def publish(self) -> Iterator[Publication]:
        """Write a new generation; on leaving the block it becomes current, atomically.

        An exception inside the block rolls everything back: readers never see the attempt.
        """
        with self.writer() as connection:
            state = self._execute(
                connection, "SELECT generation, previous_generation FROM serving_state WHERE id = 1"
            ).fetchall()
            current, previous = state[0] if state else (0, None)
            publication = Publication(self, connection, current + 1)
            for table in GENERATION_TABLES:
                self._execute(
                    connection,
                    f"CREATE TABLE g{publication.number}_{table.name} ({table.columns_sql})",
                )
            yield publication
            for table in GENERATION_TABLES:
                name = f"g{publication.number}_{table.name}"
                self._execute(
                    connection, f"CREATE UNIQUE INDEX {name}_key ON {name} ({', '.join(table.key)})"
                )
                if table in CUSTOMER_TABLES and table.key[0] != "customer_id":
                    # upsert_customers and erase_customers delete by customer_id: without this
                    # index each of their DELETEs would scan the whole table
                    self._execute(
                        connection, f"CREATE INDEX {name}_customer ON {name} (customer_id)"
                    )
            if previous is not None:
                for table in GENERATION_TABLES:
                    self._execute(connection, f"DROP TABLE IF EXISTS g{previous}_{table.name}")
            self._execute(connection, "DELETE FROM serving_state")
            self._execute(
                connection,
                "INSERT INTO serving_state (id, generation, previous_generation, published_at) "
                "VALUES (1, ?, ?, ?)",
                (publication.number, current or None, _now()),
            )

    # --- API keys ------------------------------------------------------------------------------

    def add_key(self, key_id: str, key_hash: str, role: str, label: str | None) -> None:
        with self.writer() as connection:
            self._execute(
                connection,
                "INSERT INTO api_keys (key_id, key_hash, role, label, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (key_id, key_hash, role, label, _now()),
            )

    def active_key(self, key_hash: str) -> ApiKeyRecord | None:
        rows = self.query(
            "SELECT key_id, role, label, created_at, revoked_at FROM api_keys "
            "WHERE key_hash = ? AND revoked_at IS NULL",
            (key_hash,),
        )
        return ApiKeyRecord(*rows[0]) if rows else None

    def api_keys(self) -> list[ApiKeyRecord]:
        rows = self.query(
            "SELECT key_id, role, label, created_at, revoked_at FROM api_keys ORDER BY created_at",
            (),
        )
        return [ApiKeyRecord(*r) for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key by id; False when there is no such active key."""
        with self.writer() as connection:
            cursor = self._execute(
                connection,
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (_now(), key_id),
            )
            return cursor.rowcount == 1

    # --- updates between publishes -------------------------------------------------------------

    def upsert_customers(
        self,
        customer_ids: Sequence[str],
        rows: Mapping[StoreTable, Iterable[Sequence[Any]]],
        unless_generation: int | None = None,
    ) -> Upserted:
        """Replace every row of these customers in the current generation (``Upserted``).

        The micro-batch pipeline calls this so an agent sees a customer's new activity within
        seconds, without waiting for the next publish. In one transaction it deletes the
        customers' rows from every table of ``CUSTOMER_TABLES`` and appends ``rows`` (tuples in
        each table's column order, streamed in batches): readers see each customer wholly
        before or wholly after, and a customer with no new rows (gone from gold) is deleted.
        The generation number does not change. Rows for a customer not in ``customer_ids``
        are refused (``ValueError``), since that customer's old rows would stay beside them.

        With ``unless_generation``, nothing is written (and ``rows`` are not read) while that
        generation is still current: a micro-batch that served its customers into it before
        storing them in gold serves them again only if a publish switched generations in
        between, since that publish may have read gold without them. The check and the
        replacement are one transaction, so no publish can slip between them.

        Raises ``NotPublishedError`` before the first publish: there is no generation to update.
        """
        others = [table.name for table in rows if table not in CUSTOMER_TABLES]
        if others:
            names = ", ".join(t.name for t in CUSTOMER_TABLES)
            raise ValueError(f"upsert_customers writes {names} only, not {', '.join(others)}")
        ids = list(dict.fromkeys(customer_ids))
        written = {table.name: 0 for table in CUSTOMER_TABLES}
        with self.writer() as connection:
            state = self._execute(
                connection, "SELECT generation FROM serving_state WHERE id = 1"
            ).fetchall()
            if not state:
                raise NotPublishedError(
                    "the serving store has no published generation to update: "
                    "run `omnicdp publish` first"
                )
            generation = state[0][0]
            if generation == unless_generation:
                return Upserted(None, written)
            for start in range(0, len(ids), _ERASE_BATCH):
                batch = ids[start : start + _ERASE_BATCH]
                marks = ", ".join("?" * len(batch))
                for table in CUSTOMER_TABLES:
                    self._execute(
                        connection,
                        f"DELETE FROM g{generation}_{table.name} WHERE customer_id IN ({marks})",
                        batch,
                    )
            allowed = set(ids)
            for table, table_rows in rows.items():
                written[table.name] += self._append(
                    connection, generation, table, _of_customers(table, table_rows, allowed)
                )
        return Upserted(generation, written)

    # --- erasure ---------------------------------------------------------------------------------

    def erase_customers(self, customer_ids: Sequence[str]) -> int:
        """Delete these customers from every generation the store holds (the current one and
        the previous one kept for rollback), in one transaction; rows deleted.

        Segment sizes stay as published until the next publish recounts them.
        """
        owned = [t for t in GENERATION_TABLES if "customer_id" in t.columns]
        deleted = 0
        with self.writer() as connection:
            state = self._execute(
                connection, "SELECT generation, previous_generation FROM serving_state WHERE id = 1"
            ).fetchall()
            generations = [g for g in (state[0] if state else ()) if g]
            for start in range(0, len(customer_ids), _ERASE_BATCH):
                batch = list(customer_ids[start : start + _ERASE_BATCH])
                marks = ", ".join("?" * len(batch))
                for generation in generations:
                    for table in owned:
                        name = f"g{generation}_{table.name}"
                        deleted += self._execute(
                            connection, f"DELETE FROM {name} WHERE customer_id IN ({marks})", batch
                        ).rowcount
                    deleted += self._execute(
                        connection,
                        f"DELETE FROM g{generation}_{RETIRED_ID.name} "
                        f"WHERE surviving_id IN ({marks}) OR retired_id IN ({marks})",
                        batch + batch,
                    ).rowcount
        return deleted


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _of_customers(
    table: StoreTable, rows: Iterable[Sequence[Any]], customer_ids: set[str]
) -> Iterator[Sequence[Any]]:
    """``rows``, failing on the first that belongs to a customer outside ``customer_ids``."""
    at = table.columns.index("customer_id")
    for row in rows:
        if row[at] not in customer_ids:
            raise ValueError(
                f"a {table.name} row of customer {row[at]} is not among the customers "
                "being replaced"
            )
        yield row
