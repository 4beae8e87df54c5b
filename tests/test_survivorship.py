"""Survivorship rules and provenance on real Spark + Delta, over hand-built silver records.

No linkage is needed: the customer ids are given by a hand-made xref. One rules file gives each
attribute a different rule kind, so a single profile run checks all of them; customer C1 has
records that each rule ranks differently, C2 has records tied on everything but record_id.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import Row, SparkSession

from identity.profile import profile_table
from identity.resolve import resolve_identities
from identity.survivorship import SurvivorshipRuleError, load_survivorship_rules
from jobs.lakehouse.delta import overwrite_table, read_table
from jobs.lakehouse.spark_schema import spark_schema
from schemas.catalog import GOLD_CUSTOMER_PROFILE
from schemas.settings import Settings
from schemas.tables import CUSTOMER_PROFILE, CUSTOMER_RECORDS, IDENTITY_XREF, SURVIVED_ATTRIBUTES
from tests.builders import frame, record_of, xref_rows

T1, T2, T3, T4 = (datetime(2026, 3, d) for d in (1, 2, 3, 4))
P1, P2 = "+12125550101", "+12125550102"

# One rule kind per attribute (the shipped file mixes them; this one isolates them).
RULES = {
    "name": {"rule": "most_complete", "tie_breakers": ["most_recent"]},
    "email": {
        "rule": "verified_first",
        "verified_sources": ["web", "app"],
        "tie_breakers": ["most_recent"],
    },
    "phone": {"rule": "most_frequent", "tie_breakers": ["most_recent"]},
    "dob": {"rule": "source_priority", "sources": ["app", "web"]},
    "address": {"rule": "most_recent"},
    "country": {"rule": "most_frequent"},  # ties fall through to the smallest record_id
    "loyalty_id": {"rule": "most_recent"},
}

ANN_HOME = {"address_line": "1 main st", "postcode": "10001", "city": "new york"}
RECORDS: list[tuple[str, dict[str, Any]]] = [
    # C1: the most complete record (web:ann@...), a newer verified login (web:ann.lee@...), an
    # app account, a social handle seen last with an email read from a DM, two loyalty cards.
    ("C1", {"record_id": "web:ann@example.com", "first_name": "ann", "last_name": "lee",
            "email": "ann@example.com", "phone": P1, "dob": date(1990, 1, 2), "country": "US",
            "email_opt_in": True, "sms_opt_in": True, "last_seen_at": T2, **ANN_HOME}),
    ("C1", {"record_id": "web:ann.lee@example.com", "first_name": "ann", "last_name": "li",
            "email": "ann.lee@example.com", "address_line": "9 oak ave", "postcode": "10002",
            "city": "new york", "country": "US", "email_opt_in": False, "last_seen_at": T3}),
    ("C1", {"record_id": "app:A1", "first_name": "anne", "last_name": "lee",
            "email": "anne@example.com", "phone": P2, "dob": date(1990, 2, 1), "country": "US",
            "push_opt_in": True, "last_seen_at": T1}),
    ("C1", {"record_id": "social:annl", "full_name": "ann lee", "email": "ann@dm.example",
            "phone": P2, "city": "boston", "last_seen_at": T4}),
    ("C1", {"record_id": "pos:L1", "full_name": "ann lee", "phone": P2, "loyalty_id": "L1",
            "country": "KR", "last_seen_at": T3}),
    ("C1", {"record_id": "pos:L2", "full_name": "ann lee", "loyalty_id": "L2", "country": "KR",
            "last_seen_at": T1}),
    # C2: two calls equal on every rule; no email, no consent statement.
    ("C2", {"record_id": "call_center:CASE-2", "full_name": "bo kim", "last_seen_at": T2}),
    ("C2", {"record_id": "call_center:CASE-1", "full_name": "bo kima", "last_seen_at": T2}),
]  # fmt: skip


def write_rules(path: Path, rules: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(rules))
    return path


@pytest.fixture(scope="module")
def profiles(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Row]:
    """The profile table written to and read back from Delta, by customer_id."""
    root = tmp_path_factory.mktemp("survivorship")
    settings = Settings(lakehouse=root / "lakehouse", spark_master="local[2]")
    silver = [record_of(r["record_id"], first_seen_at=T1, **r) for _, r in RECORDS]
    records = frame(spark, silver, CUSTOMER_RECORDS)
    xref = frame(spark, xref_rows({r["record_id"]: c for c, r in RECORDS}, T4), IDENTITY_XREF)
    rules = load_survivorship_rules(write_rules(root / "rules.yaml", RULES))
    overwrite_table(profile_table(records, xref, "m1", T4, rules), settings, GOLD_CUSTOMER_PROFILE)
    table = read_table(spark, settings, GOLD_CUSTOMER_PROFILE)
    assert table.schema.simpleString() == spark_schema(CUSTOMER_PROFILE).simpleString()
    return {row.customer_id: row for row in table.collect()}


def origin(profile: Row, attribute: str) -> tuple[str, str, datetime, str] | None:
    p = profile.provenance[attribute]
    return None if p is None else (p.source, p.record_id, p.observed_at, p.rule)


def test_most_complete_takes_the_fullest_name_and_cites_its_record(
    profiles: dict[str, Row],
) -> None:
    ann = profiles["C1"]
    # Three records have first and last name; the first web record has most fields overall.
    assert (ann.first_name, ann.last_name, ann.full_name) == ("ann", "lee", "ann lee")
    assert origin(ann, "name") == ("web", "web:ann@example.com", T2, "most_complete")


def test_verified_first_prefers_a_login_email_over_a_newer_dm(profiles: dict[str, Row]) -> None:
    ann = profiles["C1"]
    # The DM email is the newest; among verified sources the newest is the second web login.
    assert ann.email == "ann.lee@example.com"
    assert origin(ann, "email") == ("web", "web:ann.lee@example.com", T3, "verified_first")


def test_most_frequent_with_most_recent_as_tie_breaker(profiles: dict[str, Row]) -> None:
    ann = profiles["C1"]
    assert ann.phone == P2  # three records against one
    assert origin(ann, "phone") == ("social", "social:annl", T4, "most_frequent")


def test_source_priority_takes_the_first_listed_source(profiles: dict[str, Row]) -> None:
    ann = profiles["C1"]
    assert ann.dob == date(1990, 2, 1)
    assert origin(ann, "dob") == ("app", "app:A1", T1, "source_priority")


def test_most_recent_takes_a_whole_address_from_the_latest_record_that_has_one(
    profiles: dict[str, Row],
) -> None:
    ann = profiles["C1"]
    # The social record is newer but only names a city: it offers no address.
    assert (ann.address_line, ann.postcode, ann.city) == ("9 oak ave", "10002", "new york")
    assert origin(ann, "address") == ("web", "web:ann.lee@example.com", T3, "most_recent")
    assert ann.loyalty_id == "L1"
    assert ann.loyalty_ids == ["L1", "L2"]
    assert origin(ann, "loyalty_id") == ("pos", "pos:L1", T3, "most_recent")


def test_ties_end_on_the_smallest_record_id(profiles: dict[str, Row]) -> None:
    # Three US records against two KR: the tie among the three goes to the smallest record_id.
    assert profiles["C1"].country == "US"
    assert profiles["C1"].provenance.country.record_id == "app:A1"
    bo = profiles["C2"]
    assert bo.full_name == "bo kima"
    assert bo.provenance.name.record_id == "call_center:CASE-1"


def test_consent_is_the_most_restrictive_statement(profiles: dict[str, Row]) -> None:
    ann = profiles["C1"]
    assert (ann.email_opt_in, ann.sms_opt_in, ann.push_opt_in, ann.ads_opt_in) == (
        False,  # one record opted out: out
        True,
        True,
        None,  # nobody said anything: unknown, not consent
    )
    assert origin(ann, "email_opt_in") == (
        "web",
        "web:ann.lee@example.com",
        T3,
        "most_restrictive",
    )
    assert ann.provenance.sms_opt_in.record_id == "web:ann@example.com"
    assert ann.provenance.ads_opt_in is None


def test_an_attribute_nobody_has_stays_null_without_provenance(profiles: dict[str, Row]) -> None:
    bo = profiles["C2"]
    assert (bo.email, bo.provenance.email, bo.email_opt_in) == (None, None, None)
    assert bo.record_count == 2


def test_the_shipped_rules_name_every_attribute() -> None:
    rules = load_survivorship_rules(Settings().survivorship_rules)
    assert set(rules) == set(SURVIVED_ATTRIBUTES)


def _with(attribute: str, **changes: Any) -> dict[str, Any]:
    return {**RULES, attribute: {**RULES[attribute], **changes}}


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (_with("email", rule="newest"), "email.rule: 'newest': Input should be 'source_priority'"),
        (
            _with("dob", sources=["app", "webb"]),
            "dob.sources: unknown source 'webb' (sources: pos, web, app, call_center, social)",
        ),
        (
            _with("phone", tie_breakers=["source_priority"]),
            "phone: 'source_priority' needs a non-empty 'sources' list",
        ),
        (
            _with("address", verified_sources=["web"]),
            "address: 'verified_sources' is given but no 'verified_first' rule uses it",
        ),
        (_with("country", tie_breakers=["most_frequent"]), "country: rule 'most_frequent' appears"),
        ({**RULES, "loyalty_id": "newest"}, "loyalty_id: 'newest': Input should be a valid dict"),
        (
            {("nmae" if k == "name" else k): v for k, v in RULES.items()},
            "nmae: unknown attribute; name: no rule given",
        ),
    ],
)
def test_a_bad_rules_file_names_the_file_attribute_and_value(
    tmp_path: Path, rules: dict[str, Any], message: str
) -> None:
    path = write_rules(tmp_path / "rules.yaml", rules)
    with pytest.raises(SurvivorshipRuleError) as raised:
        load_survivorship_rules(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_resolve_refuses_a_bad_rules_file_before_any_work(
    spark: SparkSession, settings: Settings
) -> None:
    bad = write_rules(settings.landing.parent / "rules.yaml", _with("email", rule="newest"))
    with pytest.raises(SurvivorshipRuleError, match=r"email\.rule: 'newest'"):
        resolve_identities(spark, settings.model_copy(update={"survivorship_rules": bad}))
    assert not settings.resolved_model_path.exists()  # no model trained, nothing linked
