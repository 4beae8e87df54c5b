"""Silver on real Spark + Delta: standardized identity records and one interaction schema."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pyspark.sql import SparkSession

from jobs.ingest import ingest_batch
from jobs.standardize import standardize
from schemas.catalog import SILVER_CUSTOMER_RECORDS, SILVER_INTERACTIONS
from schemas.identifiers import normalize_phone
from schemas.settings import Settings
from schemas.sources import CALL_CENTER, POS
from tests.test_ingest import write


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("010-1234-5678", "KR", "+821012345678"),
        ("01012345678", "KR", "+821012345678"),
        ("+82 10 1234 5678", "US", "+821012345678"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("010-1234-5678", None, "+821012345678"),  # no country: tries KR then US
        ("12345", "KR", None),
        ("", "KR", None),
    ],
)
def test_phones_become_e164(raw: str, country: str | None, expected: str | None) -> None:
    assert normalize_phone(raw, country) == expected


@pytest.fixture(scope="module")
def silver(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small landing set covering every source, ingested and standardized once per module."""
    root = tmp_path_factory.mktemp("standardize")
    settings = Settings(
        lakehouse=root / "lakehouse",
        landing=root / "landing",
        spark_master="local[2]",
        shuffle_partitions=4,
    )
    day = settings.landing
    write(
        day / "pos" / "2026-11-01" / "pos.csv",
        "\n".join(
            [
                ",".join(POS.columns),
                "T1,S01,KR,1,2026-11-01 10:00:00,L1,KIM  Minji,010-1234-5678,A1:beauty:1:9000,"
                "9000.00,KRW",
                "T2,S01,KR,1,2026-11-02 09:00:00,L1,Kim Minji 😀,,A2:home:1:1000|A3:beauty:2:500,"
                "2000.00,KRW",
                "T3,S01,KR,1,2026-11-02 09:30:00,,,,A4:grocery:1:700,700.00,KRW",
                # baskets a till should not write: no ":" at all (1 MB of it), an empty line
                f"T4,S01,KR,1,2026-11-02 09:40:00,,,,{'X' * 1_000_000},1.00,KRW",
                "T5,S01,KR,1,2026-11-02 09:50:00,,,,A5:toys:1:100||,100.00,KRW",
            ]
        )
        + "\n",
    )
    web = [
        {
            "event_id": "W1",
            "ts": "2026-11-01T08:00:00+09:00",
            "cookie_id": "c1",
            "event_type": "page_view",
            "page": "/home",
        },
        {
            "event_id": "W2",
            "ts": "2026-11-01T08:01:00+09:00",
            "cookie_id": "c1",
            "login_email": " Minji.Kim@Example.COM ",
            "event_type": "login",
        },
        {
            "event_id": "W3",
            "ts": "2026-11-01T08:02:00+09:00",
            "cookie_id": "c1",
            "login_email": "minji.kim@example.com",
            "event_type": "profile_update",
            "profile": {
                "first_name": "Minji",
                "last_name": "Kim",
                "dob": "1992-03-04",
                "phone": "+82 10 1234 5678",
                "address": "12 Gangnam Street, Apt 3",
                "postcode": "06 236",
                "city": "Seoul",
            },
        },
        {
            "event_id": "W4",
            "ts": "2026-11-02T08:00:00+09:00",
            "cookie_id": "c1",
            "login_email": "minji.kim@example.com",
            "event_type": "return_request",
            "return_request": {
                "order_id": "O1",
                "status": "failed",
                "reason": "size",
                "error": "return window check failed",
            },
        },
        {
            "event_id": "W4",
            "ts": "2026-11-02T08:00:00+09:00",
            "cookie_id": "c1",
            "login_email": "minji.kim@example.com",
            "event_type": "return_request",
            "return_request": {"order_id": "O1", "status": "failed"},
        },  # re-sent event
        {
            "event_id": "W5",
            "ts": "2026-11-02T08:05:00+09:00",
            "cookie_id": "c1",
            "login_email": "minji.kim@example.com",
            "event_type": "consent_update",
            "consent": {"email_opt_in": "true", "sms_opt_in": "false", "ads_opt_in": "no"},
        },
    ]
    write(day / "web" / "2026-11-01" / "web.jsonl", "\n".join(map(json.dumps, web)) + "\n")
    app = [
        {
            "event_id": "P1",
            "ts": "2026-11-01T09:00:00+09:00",
            "device_id": "d1",
            "account_id": "A9",
            "app_country": "KR",
            "push_opt_in": "true",
            "event_type": "signup",
            "account": {
                "email": "MINJI.KIM@example.com",
                "first_name": "minji",
                "last_name": "kim",
                "phone": "01012345678",
                "dob": "19920304",
            },
        },
    ]
    write(day / "app" / "2026-11-01" / "app.jsonl", "\n".join(map(json.dumps, app)) + "\n")
    call = "CALL1,K1,2026-11-03T10:00:00+09:00,+821012345678,Minjee Kim,KR,return,resolved,"
    call += "420,false,true"
    write(
        day / "call_center" / "2026-11-03" / "calls.csv",
        ",".join(CALL_CENTER.columns) + "\n" + call + "\n",
    )
    social = [
        {
            "message_id": "M1",
            "ts": "2026-11-01T07:00:00+09:00",
            "handle": "@MinjiK92",
            "display_name": "Minji ✨ Kim",
            "direction": "inbound",
            "text": "my order is late!! reach me at minji.kim@example.com or 010 1234 5678",
            "sentiment": "-0.8",
            "case_id": "K1",
        },
        {
            "message_id": "M2",
            "ts": "2026-11-01T07:05:00+09:00",
            "handle": "@minjik92",
            "direction": "outbound",
            "text": "Sorry! Email us at help@brand.com",
            "sentiment": "0.2",
        },
        {  # a million characters before the email: scanned once, not once per character
            "message_id": "M3",
            "ts": "2026-11-01T07:10:00+09:00",
            "handle": "@longpost",
            "direction": "inbound",
            "text": "X" * 1_000_000 + " write to long.post@example.com",
        },
    ]
    write(day / "social" / "2026-11-01" / "social.jsonl", "\n".join(map(json.dumps, social)) + "\n")
    ingest_batch(spark, settings)
    standardize(spark, settings)
    records = spark.read.format("delta").load(SILVER_CUSTOMER_RECORDS.path(settings)).collect()
    interactions = spark.read.format("delta").load(SILVER_INTERACTIONS.path(settings)).collect()
    return {
        "settings": settings,
        "records": {r.record_id: r for r in records},
        "interactions": {r.interaction_id: r for r in interactions},
    }


def test_one_record_per_source_key_with_standardized_values(silver: dict) -> None:
    records = silver["records"]
    assert set(records) == {
        "pos:L1",
        "web:minji.kim@example.com",
        "app:A9",
        "call_center:K1",
        "social:minjik92",
        "social:longpost",
    }
    pos = records["pos:L1"]
    assert (pos.full_name, pos.first_name, pos.last_name) == ("kim minji", "kim", "minji")
    assert pos.phone == "+821012345678"  # the latest non-empty phone, not the later blank
    assert (pos.loyalty_id, pos.interaction_count) == ("L1", 2)
    web = records["web:minji.kim@example.com"]
    assert (web.email, web.first_name, web.dob) == (
        "minji.kim@example.com",
        "minji",
        date(1992, 3, 4),
    )
    assert (web.address_line, web.postcode, web.city) == ("12 gangnam st apt 3", "06236", "seoul")
    assert (web.email_opt_in, web.sms_opt_in, web.ads_opt_in) == (True, False, False)
    app = records["app:A9"]
    assert (app.email, app.dob, app.push_opt_in, app.device_id) == (
        "minji.kim@example.com",
        date(1992, 3, 4),
        True,
        "d1",
    )
    assert records["call_center:K1"].full_name == "minjee kim"
    social = records["social:minjik92"]
    assert (social.full_name, social.email, social.phone) == (
        "minji kim",
        "minji.kim@example.com",
        "+821012345678",
    )  # brand's reply not taken


def test_interactions_in_one_schema_in_utc(silver: dict) -> None:
    events = silver["interactions"]
    pos = events["pos:T1"]
    assert pos.ts == datetime(2026, 11, 1, 1, 0).replace(tzinfo=None)  # 10:00 Seoul = 01:00 UTC
    assert (pos.type, pos.amount, pos.categories) == ("purchase", Decimal("9000.00"), "beauty")
    assert events["pos:T2"].categories == "home|beauty"
    assert events["pos:T3"].record_id is None  # anonymous basket
    assert events["web:W1"].record_id == "web:minji.kim@example.com"  # cookie stitched to login
    failed = events["web:W4"]
    assert (failed.type, failed.status, failed.text) == (
        "return_request",
        "failed",
        "return window check failed",
    )
    assert sum(1 for k in events if k == "web:W4") == 1
    call = events["call_center:CALL1"]
    assert (call.case_id, call.escalated, call.handle_time_s) == ("K1", True, 420)
    assert events["social:M1"].case_id == "K1"
    assert events["social:M2"].type == "dm_outbound"
    assert all(e.ts.tzinfo is None or e.ts.tzinfo == UTC for e in events.values())


def test_standardize_is_idempotent(spark: SparkSession, silver: dict) -> None:
    settings = silver["settings"]
    standardize(spark, settings)
    again = spark.read.format("delta").load(SILVER_CUSTOMER_RECORDS.path(settings)).collect()
    assert {r.record_id: r for r in again} == silver["records"]


def test_values_standardize_cannot_use_are_their_rows_problem(silver: dict) -> None:
    """A basket line without a category gives none (the step goes on); a million-character
    message is scanned in linear time for the email it ends with."""
    events = silver["interactions"]
    assert events["pos:T4"].categories is None
    assert events["pos:T5"].categories == "toys"
    assert silver["records"]["social:longpost"].email == "long.post@example.com"
