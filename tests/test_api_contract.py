"""The agent API against its own OpenAPI document: schemathesis, every check, zero failures.

Schemathesis reads ``/openapi.json`` from the app in-process and sends what it derives from it:
the documents' examples, boundary and missing values of every parameter (coverage), random valid
and invalid requests (fuzzing) and chains of calls (stateful). Every check runs: no 5xx, status
codes, content types, headers and bodies as documented, schema-valid requests accepted and
invalid ones refused, authentication not ignored, 405 with Allow for undeclared methods. It runs
over both stores, since each refuses different input (SQLite integers above 2**63 - 1,
PostgreSQL text with a NUL character).

The one rule the document cannot state is which phone numbers and email addresses are valid,
so a lookup may refuse a schema-valid value with 422 (schemathesis' own advice for rules a
schema cannot express); every other operation must accept what its schema allows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis.engine import Status, events, from_schema

from schemas.settings import Settings
from serving.api import create_app
from serving.keys import Role, create_key
from serving.store import open_store
from serving.store.base import (
    CUSTOMER,
    LOOKUP_KEY,
    RETIRED_ID,
    SEGMENT,
    SEGMENT_MEMBER,
    TIMELINE,
    ServingStore,
)

EXAMPLES = 25  # per operation and phase: the run takes ~15 s per store on two shared cores

CONTEXT = {
    "display_name": "Mia Park",
    "tier": "silver",
    "lifetime_value": 100.0,
    "open_case_count": 1,
    "open_cases": [
        {
            "case_id": "CS1",
            "opened_at": "2026-11-01T09:00:00.000Z",
            "channel_path": ["social", "web", "call_center"],
            "channel_history": "social -> web -> call_center",
            "touches": 4,
        }
    ],
    "as_of": "2026-11-04T00:00:00.000Z",
}
PROFILE = {"full_name": "mia park", "email": "mia@example.com", "record_count": 3}


def _event(seq: int) -> str:
    return json.dumps(
        {"seq": seq, "ts": f"2026-11-01T0{seq}:00:00.000Z", "channel": "web", "type": "visit"}
    )


def _published(store: ServingStore) -> None:
    """One generation with a customer, a retired id, a timeline and a segment."""
    with store.publish() as publication:
        publication.load(
            CUSTOMER,
            [("C1", "Mia Park", "silver", 1, json.dumps(PROFILE), json.dumps(CONTEXT))],
        )
        publication.load(
            LOOKUP_KEY,
            [("email", "mia@example.com", "C1"), ("phone", "+821012345678", "C1"),
             ("loyalty_id", "L1", "C1"), ("handle", "miap", "C1"), ("device_id", "D-1", "C1")],
        )  # fmt: skip
        publication.load(RETIRED_ID, [("OLD1", "C1", "2026-11-01T00:00:00Z", "merged into C1")])
        publication.load(TIMELINE, [("C1", seq, _event(seq)) for seq in (1, 2, 3)])
        publication.load(SEGMENT, [("vip", 1, "email", "2026-11-04T00:00:00Z")])
        publication.load(SEGMENT_MEMBER, [("vip", "C1", "email")])


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServingStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = open_store(url)
    _published(store)
    yield store
    store.close()


def _config(key: str) -> schemathesis.Config:
    return schemathesis.Config.from_str(f"""
headers = {{ Authorization = "Bearer {key}" }}

[checks]
enabled = true

[generation]
max-examples = {EXAMPLES}

[[operations]]
include-path-regex = "^/v1/customers/lookup/"
checks.positive_data_acceptance.expected-statuses = ["200", "404", "422"]
""")


def test_every_input_gets_a_documented_answer(store: ServingStore, tmp_path: Path) -> None:
    settings = Settings(
        lakehouse=tmp_path / "lakehouse",
        serving_rate_limit=1e9,  # the run sends thousands of requests with one key
        serving_rate_burst=10**9,
    )
    key = create_key(store, Role.ADMIN).key
    app = create_app(settings, store)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(key))

    failures: set[tuple[str, str, str]] = set()
    cases: Counter[str] = Counter()
    errors: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases[event.phase.value] += len(event.recorder.cases)
            failures |= _failures(event.recorder)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            errors.append(str(getattr(event, "info", None) or event.exception))
    print(f"schemathesis cases per phase: {dict(cases)}")
    assert not errors, errors
    assert not failures, "\n".join(" | ".join(f) for f in sorted(failures))
    assert sum(cases.values()) > 500  # it ran, and not just a handful of requests


def _failures(recorder: object) -> set[tuple[str, str, str]]:
    """(operation, check, first lines of the message) of every failed check."""
    found = set()
    for case_id, checks in recorder.checks.items():  # type: ignore[attr-defined]
        for check in checks:
            if check.status == Status.FAILURE:
                info = check.failure_info
                message = info.failure.message if info else ""
                sample = info.code_sample if info else case_id
                found.add((recorder.label, check.name, f"{message[:200]} :: {sample}"))  # type: ignore[attr-defined]
    return found
