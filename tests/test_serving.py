"""Publish + agent API + MCP tools over real stores: SQLite always, PostgreSQL on a real server.

Hand-made gold for three customers:

- C1 (Mia Park): web account mia@example.com with phone +82 10-1234-5678, social handle miap,
  an app on device D-1; one open case that went social -> web -> call_center.
- C2 (Leo Kim): loyalty card L2 in a Korean store, with the same phone as Mia (a household).
- C3 (Sam Lee): a call-center caller on +1 415 555 0101.

Identity resolution merged OLD0 into OLD1 in one run and OLD1 into C1 in the next (both retired)
and split some records of C2 off to C3 (C2 lives on). Segments: vip = {C1, C2} (email consent),
lapsing = {C3} (sms consent).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import anyio
import psycopg
import pytest
from fastapi.testclient import TestClient
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.lakehouse.spark_schema import spark_schema
from jobs.publish import PublishSummary, publish, publish_customers, serving_frames
from jobs.values import clean_email
from schemas.catalog import (
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_ID_HISTORY,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_IDENTITY_XREF,
    GOLD_SEGMENT_MEMBERSHIP,
    SILVER_CUSTOMER_RECORDS,
    Table,
)
from schemas.identifiers import normalize_email, normalize_handle
from schemas.settings import Settings
from schemas.tables import (
    AGENT_CONTEXT,
    CUSTOMER_ID_HISTORY,
    CUSTOMER_PROFILE,
    CUSTOMER_RECORDS,
    CUSTOMER_TIMELINE,
    IDENTITY_XREF,
    SEGMENT_MEMBERSHIP,
)
from schemas.types import Struct
from serving.api import create_app
from serving.customers import CustomerDirectory, LookupKind
from serving.keys import Authenticator, Role, create_key, hash_key
from serving.problems import CustomerNotFound, Unauthorized
from serving.store import open_store
from serving.store.base import (
    CUSTOMER,
    CUSTOMER_TABLES,
    LOOKUP_KEY,
    RETIRED_ID,
    NotPublishedError,
    ServingStore,
    Upserted,
)
from serving.store.base import TIMELINE as TIMELINE_TABLE
from serving.tools import create_mcp_server

BIN = Path(sys.executable).parent
T0 = datetime(2026, 11, 1, 9, 0)
MIA_PHONE = "+821012345678"

RECORDS = [
    {"record_id": "web:mia@example.com", "source": "web", "source_key": "mia@example.com",
     "email": "mia@example.com", "phone": MIA_PHONE},
    {"record_id": "social:miap", "source": "social", "source_key": "miap",
     "social_handle": "miap"},
    {"record_id": "app:A1", "source": "app", "source_key": "A1", "device_id": "D-1"},
    {"record_id": "pos:L2", "source": "pos", "source_key": "L2", "loyalty_id": "L2",
     "phone": MIA_PHONE},
    {"record_id": "call_center:CS3", "source": "call_center", "source_key": "CS3",
     "phone": "+14155550101"},
]  # fmt: skip
OWNERS = {
    "web:mia@example.com": "C1",
    "social:miap": "C1",
    "app:A1": "C1",
    "pos:L2": "C2",
    "call_center:CS3": "C3",
}
PROFILES = [
    {"customer_id": "C1", "full_name": "mia park", "email": "mia@example.com",
     "phone": MIA_PHONE, "social_handles": ["miap"], "email_opt_in": True},
    {"customer_id": "C2", "full_name": "leo kim", "phone": MIA_PHONE, "loyalty_ids": ["L2"],
     "provenance": {"phone": {"source": "pos", "record_id": "pos:L2", "observed_at": T0,
                              "rule": "most_frequent"}}},
    {"customer_id": "C3", "full_name": "sam lee", "phone": "+14155550101"},
]  # fmt: skip
OPEN_CASE = {
    "case_id": "CS1",
    "opened_at": T0,
    "last_activity_at": datetime(2026, 11, 2, 16, 0),
    "channel_path": ["social", "web", "call_center"],
    "channel_history": "social -> web -> call_center",
    "touches": 4,
    "last_status": "callback_scheduled",
    "reason": "complaint",
}
CONTEXTS = [
    {"customer_id": "C1", "display_name": "Mia Park", "tier": "silver", "language": "en",
     "lifetime_value": Decimal("100.00"), "reporting_currency": "USD",
     "consents": ["email", "ads"], "open_case_count": 1, "open_cases": [OPEN_CASE],
     "last_interactions": [{"channel": "call_center", "ts": datetime(2026, 11, 2, 16, 0),
                            "type": "call", "status": "callback_scheduled",
                            "summary": "Call Center: call about complaint"}],
     "failed_self_service": [], "recent_sentiment": -0.6,
     "next_best_action": "own_the_case", "next_best_action_rule": "cross_channel_case",
     "next_best_action_reason": "Case CS1 is open and has travelled social -> web -> call_center."},
    {"customer_id": "C2", "display_name": "Leo Kim", "tier": "bronze", "open_case_count": 0,
     "open_cases": [], "lifetime_value": Decimal("20.00")},
    {"customer_id": "C3", "display_name": "Sam Lee", "tier": "bronze", "open_case_count": 0},
]  # fmt: skip
TIMELINE = [
    {"customer_id": "C1", "seq": n, "ts": datetime(2026, 11, 1, 9 + n), "channel": channel,
     "source": channel, "type": kind, "summary": f"{channel}: {kind}",
     "interaction_id": f"{channel}:{n}", "record_id": "social:miap"}
    for n, channel, kind in ((1, "social", "dm_inbound"), (2, "web", "page_view"),
                             (3, "call_center", "call"))
] + [{"customer_id": "C3", "seq": 1, "ts": T0, "channel": "call_center", "type": "call",
      "interaction_id": "call_center:9"}]  # fmt: skip
SEGMENTS = [("vip", "C1", "email"), ("vip", "C2", "email"), ("lapsing", "C3", "sms")]
HISTORY = [
    {"event_id": "e0", "event": "merge", "previous_id": "OLD0", "current_id": "OLD1",
     "records": 1, "changed_at": datetime(2026, 10, 1), "reason": "merged into OLD1"},
    {"event_id": "e1", "event": "merge", "previous_id": "OLD1", "current_id": "C1",
     "records": 2, "changed_at": T0, "reason": "merged into C1"},
    {"event_id": "e2", "event": "split", "previous_id": "C2", "current_id": "C3",
     "records": 1, "changed_at": T0, "reason": "split: 1 of its records moved to C3"},
]  # fmt: skip


def frame(spark: SparkSession, rows: list[dict], schema: Struct) -> DataFrame:
    return spark.createDataFrame(
        [tuple(row.get(f.name) for f in schema.fields) for row in rows], spark_schema(schema)
    )


def save(df: DataFrame, settings: Settings, table: Table) -> None:
    df.write.format("delta").mode("overwrite").save(table.path(settings))


def write_gold(spark: SparkSession, settings: Settings) -> None:
    """The silver and gold tables publish reads, at their catalog paths."""
    at = datetime(2026, 11, 4)
    sizes = {c: list(OWNERS.values()).count(c) for c in OWNERS.values()}
    xref = [
        {"record_id": r, "source": r.split(":")[0], "customer_id": c, "cluster_size": sizes[c],
         "resolved_at": at}
        for r, c in OWNERS.items()
    ]  # fmt: skip
    profiles = [{"record_count": 1, "model_version": "t", "resolved_at": at, **p} for p in PROFILES]
    members = [
        {"segment": s, "customer_id": c, "consent_purpose": p, "as_of": at} for s, c, p in SEGMENTS
    ]
    save(frame(spark, RECORDS, CUSTOMER_RECORDS), settings, SILVER_CUSTOMER_RECORDS)
    save(frame(spark, xref, IDENTITY_XREF), settings, GOLD_IDENTITY_XREF)
    save(frame(spark, profiles, CUSTOMER_PROFILE), settings, GOLD_CUSTOMER_PROFILE)
    contexts = [{"as_of": at, **c} for c in CONTEXTS]
    save(frame(spark, contexts, AGENT_CONTEXT), settings, GOLD_AGENT_CONTEXT)
    save(frame(spark, TIMELINE, CUSTOMER_TIMELINE), settings, GOLD_CUSTOMER_TIMELINE)
    save(frame(spark, members, SEGMENT_MEMBERSHIP), settings, GOLD_SEGMENT_MEMBERSHIP)
    save(frame(spark, HISTORY, CUSTOMER_ID_HISTORY), settings, GOLD_CUSTOMER_ID_HISTORY)


# --- fixtures: gold once, published once per backend ---------------------------------------------


@pytest.fixture(scope="module")
def gold(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("serving")
    settings = Settings(lakehouse=root / "lakehouse", spark_master="local[2]")
    write_gold(spark, settings)
    return settings


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def published(
    request: pytest.FixtureRequest, spark: SparkSession, gold: Settings
) -> tuple[Settings, PublishSummary]:
    """Gold published into one backend's store (the default SQLite file, or PostgreSQL)."""
    if request.param == "sqlite":
        settings = gold
    else:
        settings = gold.model_copy(update={"serving_url": request.getfixturevalue("postgres_url")})
    return settings, publish(spark, settings)


@pytest.fixture(scope="module")
def store(published: tuple[Settings, PublishSummary]) -> Iterator[ServingStore]:
    settings, _ = published
    store = open_store(settings.resolved_serving_url)
    yield store
    store.close()


@pytest.fixture(scope="module")
def keys(store: ServingStore) -> dict[str, str]:
    return {role.value: create_key(store, role, f"test {role}").key for role in Role}


@pytest.fixture(scope="module")
def client(published: tuple[Settings, PublishSummary], store: ServingStore) -> TestClient:
    """The API, checking keys on every request (revocations in these tests apply at once)."""
    settings, _ = published
    uncached = settings.model_copy(update={"serving_key_cache_seconds": 0.0})
    return TestClient(create_app(uncached, store))


def fresh_database(url: str, name: str) -> str:
    """A new, empty database on the test server (tests that publish their own generations)."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return url.replace("/postgres?", f"/{name}?")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["type"] and body["title"]
    return body


# --- publish ------------------------------------------------------------------------------------


def test_publish_streams_every_table_into_a_new_generation(
    published: tuple[Settings, PublishSummary],
) -> None:
    _, summary = published
    assert summary.generation == 1
    assert summary.rows == {
        "customer": 3,
        # C1: email, phone, handle, device; C2: loyalty, phone; C3: phone
        "lookup_key": 7,
        "retired_id": 2,  # merges only: a split id lives on
        "timeline": 4,
        "segment": 2,
        "segment_member": 3,
    }


def test_publish_without_id_history_or_with_missing_gold(
    spark: SparkSession, gold: Settings, tmp_path: Path
) -> None:
    """Before identity has retired any id there is no history table; a missing table is named."""
    copy = gold.model_copy(update={"lakehouse": tmp_path / "lakehouse"})
    shutil.copytree(gold.lakehouse, copy.lakehouse)
    shutil.rmtree(GOLD_CUSTOMER_ID_HISTORY.path(copy))
    frames = serving_frames(spark, copy)
    assert RETIRED_ID not in frames and CUSTOMER in frames
    shutil.rmtree(GOLD_AGENT_CONTEXT.path(copy))
    with pytest.raises(FileNotFoundError, match=r"gold\.agent_context not found"):
        serving_frames(spark, copy)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_readers_never_see_a_half_published_generation(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    else:
        url = fresh_database(request.getfixturevalue("postgres_url"), "atomic")
    store = open_store(url)
    with store.publish() as publication:
        publication.load(CUSTOMER, [("N1", "New", None, 0, None, None)])
        assert store.current() is None  # readers wait for the whole generation
    current = store.current()
    assert current.customer("N1") is not None

    with pytest.raises(RuntimeError), store.publish() as publication:
        publication.load(CUSTOMER, [("N2", "Half", None, 0, None, None)])
        publication.load(LOOKUP_KEY, [("phone", "+14155550199", "N2")])
        assert store.current().number == current.number
        raise RuntimeError("publish killed half-way")
    after = store.current()
    assert after.number == current.number  # the failed attempt left no trace
    assert after.customer("N1") is not None and after.lookup("phone", "+14155550199") == []
    store.close()


# --- updates between publishes (the micro-batch pipeline) ---------------------------------------


def _empty_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres_url"), name)


def _event(seq: int, channel: str) -> str:
    return json.dumps({"seq": seq, "channel": channel, "type": "visit"})


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upserted_customers_are_read_at_once_in_the_same_generation(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """N1 changes (new tier, a phone dropped, a new event), N3 is new, N2 is left alone."""
    store = open_store(_empty_store(backend, tmp_path, request, "upserts"))
    with store.publish() as publication:
        publication.load(
            CUSTOMER,
            [
                ("N1", "Ann", "bronze", 0, None, json.dumps({"tier": "bronze"})),
                ("N2", "Bo", "silver", 1, None, json.dumps({"tier": "silver"})),
            ],
        )
        publication.load(
            LOOKUP_KEY,
            [("email", "ann@example.com", "N1"), ("phone", "+14155550111", "N1"),
             ("phone", "+14155550122", "N2")],
        )  # fmt: skip
        publication.load(TIMELINE_TABLE, [("N1", 1, _event(1, "web")), ("N2", 1, _event(1, "pos"))])
    directory = CustomerDirectory(store)  # reuses a pointer for a second, as the API does
    assert directory.context("N1").tier == "bronze"

    written = store.upsert_customers(
        ["N1", "N3"],
        {
            CUSTOMER: [
                ("N1", "Ann", "gold", 1, None, json.dumps({"tier": "gold"})),
                ("N3", "Cy", "bronze", 0, None, json.dumps({"tier": "bronze"})),
            ],
            LOOKUP_KEY: [("email", "ann@example.com", "N1"), ("phone", "+14155550133", "N3")],
            TIMELINE_TABLE: [
                ("N1", 1, _event(1, "web")),
                ("N1", 2, _event(2, "app")),
                ("N3", 1, _event(1, "social")),
            ],
        },
    )

    assert written == Upserted(1, {"customer": 2, "lookup_key": 2, "timeline": 3})
    assert store.current().number == 1  # no new generation
    assert directory.context("N1").tier == "gold"
    found = directory.find(LookupKind.EMAIL, "ann@example.com").matches
    assert [(m.customer_id, m.tier) for m in found] == [("N1", "gold")]
    with pytest.raises(CustomerNotFound):
        directory.find(LookupKind.PHONE, "+14155550111")  # N1 no longer has it
    assert [e.seq for e in directory.timeline("N1").events] == [2, 1]
    assert directory.find(LookupKind.PHONE, "+14155550133").matches[0].customer_id == "N3"
    assert [e.channel for e in directory.timeline("N3").events] == ["social"]
    assert directory.context("N2").tier == "silver"
    assert directory.find(LookupKind.PHONE, "+14155550122").matches[0].customer_id == "N2"
    assert [e.channel for e in directory.timeline("N2").events] == ["pos"]

    with pytest.raises(ValueError, match="customer N2 is not among"):
        store.upsert_customers(["N1"], {TIMELINE_TABLE: [("N2", 9, _event(9, "web"))]})
    assert [e.seq for e in directory.timeline("N1").events] == [2, 1]  # rolled back whole

    # Told to leave generation 1 alone while it is current, it reads no row and writes none;
    # told about a generation that is gone, it replaces the rows as before.
    def never_read() -> Iterator[tuple]:
        raise AssertionError("rows were read")
        yield ()

    assert store.upsert_customers(["N1"], {TIMELINE_TABLE: never_read()}, 1) == Upserted(
        None, {"customer": 0, "lookup_key": 0, "timeline": 0}
    )
    assert [e.seq for e in directory.timeline("N1").events] == [2, 1]
    ann = ("N1", "Ann", "gold", 1, None, json.dumps({"tier": "gold"}))
    again = store.upsert_customers(
        ["N1"], {CUSTOMER: [ann], TIMELINE_TABLE: [("N1", 1, _event(1, "web"))]}, 0
    )
    assert again == Upserted(1, {"customer": 1, "lookup_key": 0, "timeline": 1})
    assert [e.seq for e in directory.timeline("N1").events] == [1]
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upserting_before_the_first_publish_says_to_publish(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = open_store(_empty_store(backend, tmp_path, request, "unpublished"))
    with pytest.raises(NotPublishedError, match=r"run `omnicdp publish` first"):
        store.upsert_customers(["N1"], {CUSTOMER: [("N1", "Ann", None, 0, None, None)]})
    assert store.current() is None
    store.close()


def test_publish_customers_rebuilds_just_their_rows_from_gold(
    spark: SparkSession, gold: Settings, tmp_path: Path
) -> None:
    """The store holds stale C1 rows, a GONE customer that gold no longer has, and C3 rows that
    differ from gold: C1 and GONE are touched, so C1 is rebuilt, GONE deleted, C3 left as is."""
    settings = gold.model_copy(update={"serving_url": f"sqlite:///{tmp_path / 'store.sqlite'}"})
    store = open_store(settings.resolved_serving_url)
    stale_c3 = {
        "customer": [("C3", "Not Yet", None, 0, None, None)],
        "lookup_key": [("phone", "+14155550199", "C3")],
        "timeline": [],
    }
    with store.publish() as publication:
        stale = [("C1", "Stale", None, 0, None, None), ("GONE", "Gone", None, 0, None, None)]
        publication.load(CUSTOMER, [*stale, *stale_c3["customer"]])
        publication.load(LOOKUP_KEY, [("email", "old@example.com", "C1"), *stale_c3["lookup_key"]])
        publication.load(TIMELINE_TABLE, [("GONE", 1, _event(1, "web"))])
    number = store.current().number

    def rows_of(customer_id: str) -> dict[str, list[tuple]]:
        return {
            t.name: sorted(
                store.query(
                    f"SELECT * FROM g{number}_{t.name} WHERE customer_id = ?", (customer_id,)
                )
            )
            for t in CUSTOMER_TABLES
        }

    summary = publish_customers(spark, settings, ["C1", "GONE", "C1"])

    assert (summary.customers, summary.rows) == (2, {"customer": 1, "lookup_key": 4, "timeline": 3})
    c1 = rows_of("C1")
    assert c1["lookup_key"] == [
        ("device_id", "D-1", "C1"),
        ("email", "mia@example.com", "C1"),
        ("handle", "miap", "C1"),
        ("phone", MIA_PHONE, "C1"),
    ]
    assert [seq for _, seq, _ in c1["timeline"]] == [1, 2, 3]
    context = CustomerDirectory(store).context("C1")  # gold's agent context, as the API reads it
    assert context.display_name == "Mia Park" and context.tier == "silver"
    assert context.open_cases[0].channel_history == "social -> web -> call_center"
    assert rows_of("GONE") == {t.name: [] for t in CUSTOMER_TABLES}
    assert rows_of("C3") == stale_c3  # not touched: the micro-batch did not name it
    assert store.current().number == number
    store.close()


def test_lookup_values_normalize_like_silver(spark: SparkSession) -> None:
    raw = ["  Mia@Example.COM ", "mia@example", "\tmia@example.com", "", None, "a.b+c@x.io"]
    spark_values = [
        r[0]
        for r in spark.createDataFrame([(v,) for v in raw], "v string")
        .select(clean_email("v"))
        .collect()
    ]
    assert [normalize_email(v) for v in raw] == spark_values
    handles = spark.createDataFrame([(" @MiaP ",), ("miap",)], "h string")
    silver = handles.select(F.lower(F.regexp_replace(F.trim("h"), "^@", ""))).collect()
    assert [normalize_handle(v) for v in (" @MiaP ", "miap")] == [r[0] for r in silver]


# --- lookup ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"phone": "+82 10-1234-5678"}, ["C1", "C2"]),  # a household phone: both
        ({"phone": "010-1234-5678", "country": "KR"}, ["C1", "C2"]),
        ({"phone": "(415) 555-0101", "country": "US"}, ["C3"]),
        ({"email": "  Mia@Example.COM "}, ["C1"]),
        ({"handle": "@MiaP"}, ["C1"]),
        ({"loyalty_id": " L2 "}, ["C2"]),
        ({"device_id": "D-1"}, ["C1"]),
    ],
)
def test_lookup_by_whatever_the_channel_gives(
    client: TestClient, keys: dict[str, str], query: dict, expected: list[str]
) -> None:
    kind = next(k for k in query if k != "country")
    response = client.get(f"/v1/customers/lookup/{kind}", params=query, headers=auth(keys["agent"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [m["customer_id"] for m in body["matches"]] == expected
    assert body["matched_on"] == kind
    # the first version's route, one-of query parameters, answers the same
    old = client.get("/v1/customers/lookup", params=query, headers=auth(keys["agent"]))
    assert old.json() == body


def test_lookup_answer_carries_what_an_agent_sees_first(
    client: TestClient, keys: dict[str, str]
) -> None:
    response = client.get(
        "/v1/customers/lookup/email",
        params={"email": "mia@example.com"},
        headers=auth(keys["admin"]),
    )
    assert response.json()["matches"] == [
        {"customer_id": "C1", "display_name": "Mia Park", "tier": "silver", "open_case_count": 1}
    ]


@pytest.mark.parametrize(
    ("kind", "query", "field"),
    [
        ("phone", {"phone": "12345"}, "phone"),
        ("phone", {"phone": "+82 10-1234-5678", "country": "Korea"}, "country"),
        ("phone", {"country": "KR"}, "phone"),
        ("email", {"email": "mia@example"}, "email"),
        ("handle", {"handle": " "}, "handle"),
        ("loyalty_id", {}, "loyalty_id"),
    ],
)
def test_malformed_lookups_are_422_naming_the_field_not_the_value(
    client: TestClient, keys: dict[str, str], kind: str, query: dict, field: str
) -> None:
    response = client.get(f"/v1/customers/lookup/{kind}", params=query, headers=auth(keys["agent"]))
    body = problem(response, 422)
    assert [e["field"] for e in body["errors"]] == [field]
    assert not any(v in response.text for v in query.values() if len(v.strip()) > 3)


@pytest.mark.parametrize("query", [{}, {"email": "mia@example.com", "phone": "+821012345678"}])
def test_the_first_lookup_route_still_takes_exactly_one_identifier(
    client: TestClient, keys: dict[str, str], query: dict
) -> None:
    response = client.get("/v1/customers/lookup", params=query, headers=auth(keys["agent"]))
    assert [e["field"] for e in problem(response, 422)["errors"]] == ["query"]
    assert "mia@" not in response.text


def test_unknown_identifier_is_404(client: TestClient, keys: dict[str, str]) -> None:
    response = client.get(
        "/v1/customers/lookup/phone", params={"phone": "+14155550199"}, headers=auth(keys["agent"])
    )
    body = problem(response, 404)
    assert "5550199" not in response.text
    assert body["type"] == "urn:omnicdp:problem:customer-not-found"


# --- customer, context, timeline -----------------------------------------------------------------


def test_context_of_a_customer_with_a_cross_channel_case(
    client: TestClient, keys: dict[str, str]
) -> None:
    response = client.get("/v1/customers/C1/context", headers=auth(keys["agent"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["customer_id"], body["resolved_from"], body["display_name"]) == (
        "C1",
        None,
        "Mia Park",
    )
    assert body["lifetime_value"] == "100.00"  # money stays exact
    assert body["open_cases"] == [
        {
            "case_id": "CS1",
            "opened_at": "2026-11-01T09:00:00Z",
            "last_activity_at": "2026-11-02T16:00:00Z",
            "channel_path": ["social", "web", "call_center"],
            "channel_history": "social -> web -> call_center",
            "touches": 4,
            "last_status": "callback_scheduled",
            "reason": "complaint",
        }
    ]
    assert body["failed_self_service"] == []
    assert body["next_best_action"] == "own_the_case"
    assert body["as_of"] == "2026-11-04T00:00:00Z"


def test_profile_is_the_golden_record(client: TestClient, keys: dict[str, str]) -> None:
    body = client.get("/v1/customers/C2", headers=auth(keys["agent"])).json()
    assert (body["customer_id"], body["full_name"], body["phone"], body["loyalty_ids"]) == (
        "C2",
        "leo kim",
        MIA_PHONE,
        ["L2"],
    )
    # Where each attribute came from; nothing is known about the name's origin here.
    assert body["provenance"]["phone"] == {
        "source": "pos",
        "record_id": "pos:L2",
        "observed_at": "2026-11-01T09:00:00Z",
        "rule": "most_frequent",
    }
    assert body["provenance"]["name"] is None


@pytest.mark.parametrize("retired", ["OLD1", "OLD0"])
def test_a_retired_id_answers_with_the_surviving_id(
    client: TestClient, keys: dict[str, str], retired: str
) -> None:
    for path in ("", "/context", "/timeline"):
        body = client.get(f"/v1/customers/{retired}{path}", headers=auth(keys["agent"])).json()
        assert (body["customer_id"], body["resolved_from"]) == ("C1", retired)


def test_a_split_id_lives_on(client: TestClient, keys: dict[str, str]) -> None:
    body = client.get("/v1/customers/C2", headers=auth(keys["agent"])).json()
    assert (body["customer_id"], body["resolved_from"]) == ("C2", None)


def test_unknown_customer_is_404(client: TestClient, keys: dict[str, str]) -> None:
    for path in ("", "/context", "/timeline"):
        problem(client.get(f"/v1/customers/C404{path}", headers=auth(keys["agent"])), 404)


def test_timeline_newest_first_in_pages(client: TestClient, keys: dict[str, str]) -> None:
    page = client.get(
        "/v1/customers/C1/timeline", params={"limit": 2}, headers=auth(keys["agent"])
    ).json()
    assert [e["seq"] for e in page["events"]] == [3, 2]
    assert page["events"][0]["summary"] == "call_center: call"
    assert page["events"][0]["ts"] == "2026-11-01T12:00:00Z"
    rest = client.get(
        "/v1/customers/C1/timeline",
        params={"limit": 2, "before": page["next_before"]},
        headers=auth(keys["agent"]),
    ).json()
    assert ([e["seq"] for e in rest["events"]], rest["next_before"]) == ([1], None)
    problem(
        client.get("/v1/customers/C1/timeline", params={"limit": 0}, headers=auth(keys["agent"])),
        422,
    )


@pytest.mark.parametrize(("before", "status"), [(2**63 - 1, 200), (2**63, 422), (10**30, 422)])
def test_a_cursor_beyond_what_the_store_holds_is_422_not_500(
    client: TestClient, keys: dict[str, str], before: int, status: int
) -> None:
    """Regression: ``before`` >= 2**63 reached SQLite's driver, whose OverflowError was a 500."""
    response = client.get(
        "/v1/customers/C1/timeline", params={"before": before}, headers=auth(keys["agent"])
    )
    assert response.status_code == status, response.text
    if status == 422:
        assert [e["field"] for e in problem(response, 422)["errors"]] == ["before"]


def test_text_no_store_can_hold_is_found_nowhere(client: TestClient, keys: dict[str, str]) -> None:
    """A NUL character, which PostgreSQL's text refuses (its driver raised, a 500), is in no id."""
    agent, marketer = auth(keys["agent"]), auth(keys["marketer"])
    problem(client.get("/v1/customers/C1%00/context", headers=agent), 404)
    found = client.get("/v1/customers/lookup/loyalty_id?loyalty_id=L2%00", headers=agent)
    problem(found, 404)
    problem(client.get("/v1/segments/vip%00/members", headers=marketer), 404)
    paged = client.get("/v1/segments/vip/members?after=C1%00", headers=marketer)
    assert [e["field"] for e in problem(paged, 422)["errors"]] == ["after"]


# --- segments -----------------------------------------------------------------------------------


def test_marketers_page_through_segments_without_pii(
    client: TestClient, keys: dict[str, str]
) -> None:
    segments = client.get("/v1/segments", headers=auth(keys["marketer"])).json()
    assert segments == [
        {
            "name": "lapsing",
            "members": 1,
            "consent_purpose": "sms",
            "as_of": "2026-11-04T00:00:00Z",
        },
        {"name": "vip", "members": 2, "consent_purpose": "email", "as_of": "2026-11-04T00:00:00Z"},
    ]
    first = client.get(
        "/v1/segments/vip/members", params={"limit": 1}, headers=auth(keys["marketer"])
    ).json()
    assert first == {
        "segment": "vip",
        "members": [{"customer_id": "C1", "consent_purpose": "email"}],
        "next_after": "C1",
    }
    rest = client.get(
        "/v1/segments/vip/members",
        params={"limit": 1, "after": "C1"},
        headers=auth(keys["marketer"]),
    ).json()
    assert [m["customer_id"] for m in rest["members"]] == ["C2"]
    problem(client.get("/v1/segments/nope/members", headers=auth(keys["marketer"])), 404)


# --- keys, roles, limits, logs ------------------------------------------------------------------


def test_roles_decide_what_a_key_reads(client: TestClient, keys: dict[str, str]) -> None:
    def status(path: str, role: str) -> int:
        return client.get(path, headers=auth(keys[role])).status_code

    assert [status("/v1/customers/C1/context", r) for r in ("agent", "marketer", "admin")] == [
        200,
        403,
        200,
    ]
    assert [status("/v1/segments", r) for r in ("agent", "marketer", "admin")] == [403, 200, 200]
    denied = problem(client.get("/v1/customers/C1/context", headers=auth(keys["marketer"])), 403)
    assert denied["detail"].startswith("a marketer key cannot read this")
    denied = problem(client.get("/v1/segments", headers=auth(keys["agent"])), 403)
    assert denied["detail"].startswith("an agent key cannot read this")


def test_missing_unknown_and_revoked_keys_are_401(client: TestClient, store: ServingStore) -> None:
    missing = client.get("/v1/customers/C1")
    problem(missing, 401)
    assert missing.headers["www-authenticate"] == "Bearer"
    problem(client.get("/v1/customers/C1", headers=auth("ocdp_not-a-key")), 401)
    revoked = create_key(store, Role.AGENT)
    assert client.get("/v1/customers/C1", headers=auth(revoked.key)).status_code == 200
    assert store.revoke_key(revoked.key_id)
    problem(client.get("/v1/customers/C1", headers=auth(revoked.key)), 401)


def test_a_checked_key_is_trusted_for_a_while(store: ServingStore) -> None:
    now = [0.0]
    authenticator = Authenticator(store, ttl=5.0, clock=lambda: now[0])
    new = create_key(store, Role.AGENT)
    assert authenticator.authenticate(new.key).key_id == new.key_id
    store.revoke_key(new.key_id)
    now[0] = 4.0
    assert authenticator.authenticate(new.key).role == "agent"  # no query within the ttl
    now[0] = 6.0
    with pytest.raises(Unauthorized):
        authenticator.authenticate(new.key)


def test_keys_are_stored_hashed(store: ServingStore, keys: dict[str, str]) -> None:
    stored = store.query("SELECT key_id, key_hash, role FROM api_keys", ())
    assert stored and not any(key in str(stored) for key in keys.values())


def test_each_key_has_its_own_rate_limit(
    published: tuple[Settings, PublishSummary], store: ServingStore
) -> None:
    settings, _ = published
    strict = settings.model_copy(update={"serving_rate_limit": 0.5, "serving_rate_burst": 2})
    client = TestClient(create_app(strict, store))
    first, second = create_key(store, Role.AGENT).key, create_key(store, Role.AGENT).key
    statuses = [client.get("/v1/customers/C3", headers=auth(first)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = client.get("/v1/customers/C3", headers=auth(first))
    assert problem(limited, 429)["retry_after"] == int(limited.headers["retry-after"]) >= 1
    assert client.get("/v1/customers/C3", headers=auth(second)).status_code == 200


def test_access_log_has_routes_not_identifiers(
    client: TestClient, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="omnicdp.serving"):
        for query in ({"phone": "+82 10-1234-5678"}, {"email": "mia@example.com"}, {"phone": "1"}):
            (kind,) = query
            client.get(f"/v1/customers/lookup/{kind}", params=query, headers=auth(keys["agent"]))
        client.get("/v1/customers/C1/context", headers=auth(keys["agent"]))
    lines = [r.getMessage() for r in caplog.records if r.name == "omnicdp.serving.access"]
    assert len(lines) == 4
    assert lines[0].startswith("GET /v1/customers/lookup/phone 200 ")
    assert lines[3].startswith("GET /v1/customers/{customer_id}/context 200 ")
    key_tag = f"key={hash_key(keys['agent'])[:12]}"
    assert all(line.endswith(key_tag) for line in lines)
    # Everything the server logged (the test client's own httpx request log is not the server's),
    # less the key's hash: random hex, which now and then holds "1234" or "5678" itself.
    logged = (r.getMessage() for r in caplog.records if r.name.startswith("omnicdp"))
    text = "\n".join(logged).replace(key_tag, "key=")
    for pii in ("1234", "5678", "mia@", "example.com", keys["agent"]):
        assert pii not in text


# --- OpenAPI ------------------------------------------------------------------------------------


def test_openapi_document_matches_the_answers(client: TestClient, keys: dict[str, str]) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) == {
        "/healthz",
        *(f"/v1/customers/lookup/{kind}" for kind in LookupKind),
        "/v1/customers/{customer_id}",
        "/v1/customers/{customer_id}/context",
        "/v1/customers/{customer_id}/timeline",
        "/v1/segments",
        "/v1/segments/{name}/members",
    }
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    observed = [
        ("/v1/customers/lookup/phone", "/v1/customers/lookup/phone?phone=%2B821012345678",
         "agent", 200),
        ("/v1/customers/lookup/phone", "/v1/customers/lookup/phone?phone=1", "agent", 422),
        ("/v1/customers/lookup/email", "/v1/customers/lookup/email?email=a@b.io", "agent", 404),
        ("/v1/customers/{customer_id}", "/v1/customers/C1", "agent", 200),
        ("/v1/customers/{customer_id}", "/v1/customers/OLD0", "agent", 200),
        ("/v1/customers/{customer_id}", "/v1/customers/C404", "agent", 404),
        ("/v1/customers/{customer_id}/context", "/v1/customers/C1/context", "marketer", 403),
        ("/v1/customers/{customer_id}/timeline", "/v1/customers/C1/timeline", "agent", 200),
        ("/v1/segments", "/v1/segments", "marketer", 200),
        ("/v1/segments/{name}/members", "/v1/segments/x/members", "admin", 404),
        ("/v1/segments", "/v1/segments", None, 401),
    ]  # fmt: skip
    for template, url, role, status in observed:
        response = client.get(url, headers=auth(keys[role]) if role else {})
        assert response.status_code == status, url
        documented = paths[template]["get"]["responses"][str(status)]["content"]
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in documented, (url, status)
    text = json.dumps(spec)
    refs = {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}
    assert refs <= set(spec["components"]["schemas"])  # no dangling references
    assert "HTTPValidationError" not in text  # our 422s are problems, not FastAPI's shape
    lookup = paths["/v1/customers/lookup/phone"]["get"]
    assert [(p["name"], p["required"]) for p in lookup["parameters"]] == [
        ("phone", True),
        ("country", False),
    ]  # one required identifier per route: what a generated client sends, the API takes
    provenance = spec["components"]["schemas"]["CustomerProfileProvenance"]["properties"]
    assert provenance["email_opt_in"]["anyOf"][0] == {"$ref": "#/components/schemas/Provenance"}


# --- command line and MCP -----------------------------------------------------------------------


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMNICDP_LAKEHOUSE": str(settings.lakehouse),
        "OMNICDP_SERVING_URL": settings.resolved_serving_url,
        **extra,
    }


def test_keys_command_prints_a_working_key_once(
    published: tuple[Settings, PublishSummary], client: TestClient
) -> None:
    settings, _ = published
    env = _env(settings)

    def omnicdp(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "omnicdp"), *args], env=env, capture_output=True, text=True, check=True
        )

    created = omnicdp("keys", "create", "--role", "marketer", "--label", "crm sync")
    key = created.stdout.strip()
    assert key.startswith("ocdp_") and "\n" not in key
    assert client.get("/v1/segments", headers=auth(key)).status_code == 200
    listed = omnicdp("keys", "list").stdout
    assert "crm sync" in listed and key not in listed
    key_id = created.stderr.split(" key ")[1].split(";")[0]
    omnicdp("keys", "revoke", key_id)
    assert client.get("/v1/segments", headers=auth(key)).status_code == 401


def test_an_mcp_client_finds_a_caller_and_reads_their_context(
    published: tuple[Settings, PublishSummary], keys: dict[str, str]
) -> None:
    settings, _ = published
    server = StdioServerParameters(
        command=str(BIN / "omnicdp"),
        args=["mcp"],
        env={
            "OMNICDP_LAKEHOUSE": str(settings.lakehouse),
            "OMNICDP_SERVING_URL": settings.resolved_serving_url,
            "OMNICDP_API_KEY": keys["agent"],
        },
    )

    async def session() -> tuple[list, dict, dict, dict]:
        async with Client(server, read_timeout_seconds=60) as mcp:
            tools = (await mcp.list_tools()).tools
            found = await mcp.call_tool("find_customer", {"phone": "+1 415 555 0101"})
            context = await mcp.call_tool("get_customer_context", {"customer_id": "OLD1"})
            bad = await mcp.call_tool("find_customer", {"email": "not-an-email"})
            return tools, found.structured_content, context.structured_content, bad

    tools, found, context, bad = anyio.run(session)
    assert {t.name for t in tools} == {
        "find_customer",
        "get_customer_context",
        "get_customer_timeline",
    }
    assert all(len(t.description) > 80 for t in tools)
    assert [m["customer_id"] for m in found["matches"]] == ["C3"]
    assert (context["customer_id"], context["resolved_from"]) == ("C1", "OLD1")
    assert context["open_cases"][0]["channel_history"] == "social -> web -> call_center"
    assert bad.is_error and "email" in bad.content[0].text
    assert "not-an-email" not in bad.content[0].text


def test_an_mcp_timeline_cursor_beyond_what_the_store_holds_is_refused_by_name(
    published: tuple[Settings, PublishSummary], store: ServingStore, keys: dict[str, str]
) -> None:
    """Regression: ``before`` >= 2**63 reached SQLite's driver and failed with OverflowError."""
    settings, _ = published
    server = create_mcp_server(settings, store, keys["agent"])

    async def timelines() -> tuple[CallToolResult, CallToolResult]:
        async with Client(server) as mcp:
            args = {"customer_id": "C1"}
            edge = await mcp.call_tool("get_customer_timeline", {**args, "before": 2**63 - 1})
            beyond = await mcp.call_tool("get_customer_timeline", {**args, "before": 2**63})
            return edge, beyond

    edge, beyond = anyio.run(timelines)
    assert not edge.is_error
    assert [e["seq"] for e in edge.structured_content["events"]] == [3, 2, 1]
    assert beyond.is_error
    message = beyond.content[0].text
    assert "before" in message and "less than or equal to 9223372036854775807" in message
    assert "Overflow" not in message
