"""Curated gold on real Spark + Delta, on a hand-made silver/gold dataset with hand-worked values.

Five customers, as of 2026-11-03 18:00 UTC (the latest resolved interaction):

- C1 complains on social (case CS1, the brand's reply opens it), looks at the case page on the
  web, then calls: one open case that went social -> web -> call_center.
- C2 bought in store (27,000 KRW = 20 USD) and on the web (50 USD), failed a web return, called
  (unresolved), then browsed the web again.
- C3 ordered 600 USD in the app in August and only browsed since: gold tier, lapsing.
- C4 bought in a Korean store and opened an app chat (case CS4) nobody answered yet.
- C5 called about two cases and both were resolved.

An anonymous page view and a social message from an unresolved record carry later timestamps and
must not appear anywhere (not even in ``as_of``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from jobs.curate import (
    ActionRule,
    CurateSummary,
    RuleError,
    curate,
    curate_customers,
    load_rules,
    next_best_action,
)
from jobs.lakehouse.delta import overwrite_table, replace_customer_rows, store_customer_rows
from schemas.catalog import (
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_IDENTITY_XREF,
    GOLD_JOURNEY_METRICS,
    SILVER_INTERACTIONS,
    Table,
)
from schemas.settings import Settings
from schemas.tables import (
    AGENT_CONTEXT,
    CUSTOMER_360,
    CUSTOMER_PROFILE,
    CUSTOMER_TIMELINE,
    IDENTITY_XREF,
    INTERACTIONS,
)
from tests.builders import frame, owners_of, xref_rows

AS_OF = datetime(2026, 11, 3, 18, 0)
_CHANNELS = {"pos": "store", "web": "web", "app": "app", "call_center": "call_center"}
_CHANNELS["social"] = "social"


def event(interaction_id: str, record_id: str | None, at: str, kind: str, **fields: Any) -> dict:
    """One silver interaction; source and channel follow from the id's prefix."""
    source = interaction_id.split(":")[0]
    return {
        "interaction_id": interaction_id,
        "source": source,
        "channel": _CHANNELS[source],
        "record_id": record_id,
        "ts": datetime.fromisoformat(at),
        "type": kind,
        "source_file": f"{source}.test",
        "line_no": 1,
        **fields,
    }


def usd(value: str) -> dict:
    return {"amount": Decimal(value), "currency": "USD"}


INTERACTIONS_ROWS = [
    # C1: social -> web -> phone, one case.
    event("web:W10", "web:mia@example.com", "2026-10-20 10:00", "order", **usd("100.00"),
          categories="apparel|beauty"),
    event("social:M1", "social:miap", "2026-11-01 09:00", "dm_inbound", sentiment=-0.8,
          text="my parcel never came, write me at mia@example.com"),
    event("social:M2", "social:miap", "2026-11-01 09:05", "dm_outbound", case_id="CS1"),
    event("social:M3", "social:miap", "2026-11-01 09:10", "dm_inbound", case_id="CS1",
          sentiment=-0.4),
    event("web:W11", "web:mia@example.com", "2026-11-01 13:00", "page_view",
          text="/help/cases/CS1"),
    event("call_center:K1", "call_center:CS1", "2026-11-02 16:00", "call", case_id="CS1",
          reason="complaint", status="callback_scheduled", handle_time_s=600, escalated=True,
          transferred=False),
    # C2: failed web return, then a call.
    event("pos:P20", "pos:L2", "2026-10-01 12:00", "purchase", amount=Decimal("27000.00"),
          currency="KRW", categories="beauty", status="completed"),
    event("web:W20", "web:leo@example.com", "2026-10-25 09:00", "order", **usd("50.00"),
          categories="beauty"),
    event("web:W21", "web:leo@example.com", "2026-11-02 10:00", "return_request",
          status="failed", reason="wrong size", text="return window check failed"),
    event("call_center:K2", "call_center:CS2", "2026-11-03 15:00", "call", case_id="CS2",
          reason="return", status="unresolved", handle_time_s=300, escalated=False,
          transferred=True),
    event("web:W22", "web:leo@example.com", "2026-11-03 18:00", "page_view", text="/home"),
    # C3: a big app order long ago, browsing since.
    event("app:E30", "app:A3", "2026-08-01 08:00", "order", **usd("600.00"),
          categories="electronics"),
    event("app:E31", "app:A3", "2026-11-02 19:59", "app_open"),
    event("app:E32", "app:A3", "2026-11-02 20:00", "product_view", categories="books"),
    # C4: Korean store purchase, unanswered app chat.
    event("pos:P40", "pos:L4", "2026-11-01 03:00", "purchase", amount=Decimal("13500.00"),
          currency="KRW", categories="grocery|home", status="completed"),
    event("app:E40", "app:A4", "2026-11-03 11:00", "support_chat", case_id="CS4",
          text="Where is my order?"),
    # C5: two cases by phone, both resolved.
    event("call_center:K5a", "call_center:CS5", "2026-11-01 10:00", "call", case_id="CS5",
          reason="billing", status="follow_up", handle_time_s=120),
    event("call_center:K5b", "call_center:CS5", "2026-11-02 12:00", "call", case_id="CS5",
          reason="billing", status="resolved", handle_time_s=720),
    event("call_center:K6", "call_center:CS6", "2026-11-02 09:00", "call", case_id="CS6",
          reason="delivery", status="resolved", handle_time_s=360),
    # Nobody's: anonymous, and a record identity did not resolve.
    event("web:W99", None, "2026-11-04 09:00", "page_view", text="/home"),
    event("social:M99", "social:ghost", "2026-11-04 10:00", "dm_inbound", sentiment=0.5),
]  # fmt: skip

MEMBERS = {
    "C1": ["web:mia@example.com", "social:miap", "call_center:CS1"],
    "C2": ["web:leo@example.com", "call_center:CS2", "pos:L2"],
    "C3": ["app:A3"],
    "C4": ["pos:L4", "app:A4"],
    "C5": ["call_center:CS5", "call_center:CS6"],
}

PROFILES = [
    {"customer_id": "C1", "full_name": "mia park", "country": "US", "email": "mia@example.com",
     "phone": "+14155550101", "email_opt_in": True, "sms_opt_in": False, "ads_opt_in": True},
    {"customer_id": "C2", "full_name": "leo kim", "country": "US", "email": "leo@example.com",
     "email_opt_in": True, "sms_opt_in": True, "ads_opt_in": False},
    {"customer_id": "C3", "full_name": "ana diaz", "country": "US", "email_opt_in": False,
     "push_opt_in": True, "ads_opt_in": True},
    {"customer_id": "C4", "full_name": "kim minji", "country": "KR"},
    {"customer_id": "C5", "full_name": "sam lee", "country": "US"},
]  # fmt: skip


def save(df: DataFrame, settings: Settings, table: Table) -> None:
    df.write.format("delta").mode("overwrite").save(table.path(settings))


def write_inputs(spark: SparkSession, settings: Settings) -> None:
    """The hand-made silver interactions and gold identity tables, at their catalog paths."""
    resolved = datetime(2026, 11, 4)
    xref = xref_rows(owners_of(MEMBERS), resolved)
    profiles = [
        {"record_count": len(MEMBERS[p["customer_id"]]), "model_version": "test",
         "resolved_at": resolved, **p}
        for p in PROFILES
    ]  # fmt: skip
    save(frame(spark, INTERACTIONS_ROWS, INTERACTIONS), settings, SILVER_INTERACTIONS)
    save(frame(spark, xref, IDENTITY_XREF), settings, GOLD_IDENTITY_XREF)
    save(frame(spark, profiles, CUSTOMER_PROFILE), settings, GOLD_CUSTOMER_PROFILE)


def module_settings(root: Path) -> Settings:
    return Settings(
        lakehouse=root / "lakehouse",
        landing=root / "landing",
        spark_master="local[2]",
        shuffle_partitions=4,
    )


@pytest.fixture(scope="module")
def curated(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, CurateSummary]]:
    settings = module_settings(tmp_path_factory.mktemp("curate"))
    write_inputs(spark, settings)
    yield settings, curate(spark, settings)


def rows(spark: SparkSession, settings: Settings, table: Table) -> list[dict]:
    return [r.asDict(recursive=True) for r in spark.read.format("delta").load(
        table.path(settings)
    ).collect()]  # fmt: skip


def by_customer(spark: SparkSession, settings: Settings, table: Table) -> dict[str, dict]:
    return {r["customer_id"]: r for r in rows(spark, settings, table)}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- customer_timeline -------------------------------------------------------------------------


def test_timeline_orders_and_summarizes_every_resolved_interaction(
    spark: SparkSession, curated: tuple[Settings, CurateSummary]
) -> None:
    settings, summary = curated
    events = {r["interaction_id"]: r for r in rows(spark, settings, GOLD_CUSTOMER_TIMELINE)}
    assert len(events) == 19  # 21 silver rows minus the anonymous and the unresolved one
    assert summary.as_of == AS_OF  # the unresolved 11-04 messages do not move it
    c1 = sorted((e for e in events.values() if e["customer_id"] == "C1"), key=lambda e: e["seq"])
    assert [e["interaction_id"] for e in c1] == [
        "web:W10",
        "social:M1",
        "social:M2",
        "social:M3",
        "web:W11",
        "call_center:K1",
    ]
    assert events["web:W11"]["case_id"] == "CS1"  # the case page is a touch of the case
    assert events["social:M2"]["initiated_by"] == "brand"
    assert events["pos:P20"]["amount_reporting"] == Decimal("20.00")  # 27,000 KRW / 1,350
    expected = {
        "web:W10": "Web: order 100.00 USD (apparel, beauty)",
        "social:M1": "Social: message from customer (negative)",
        "social:M2": "Social: reply by brand on case CS1",
        "social:M3": "Social: message from customer on case CS1 (negative)",
        "web:W11": "Web: page view /help/cases/CS1",
        "call_center:K1": (
            "Call Center: call about complaint (case CS1: callback_scheduled, 10.0 min, escalated)"
        ),
        "web:W21": "Web: return request failed (wrong size): return window check failed",
        "call_center:K2": "Call Center: call about return (case CS2: unresolved, 5.0 min, "
        "transferred)",
        "pos:P20": "Store: purchase 27000.00 KRW (beauty)",
        "app:E32": "App: product view (books)",
        "app:E31": "App: app open",
        "app:E40": "App: support chat on case CS4",
    }
    assert {k: events[k]["summary"] for k in expected} == expected
    assert not any("@" in e["summary"] for e in events.values())  # DM text stays out


# --- customer_360 ------------------------------------------------------------------------------


def test_customer_360_values_worked_by_hand(
    spark: SparkSession, curated: tuple[Settings, CurateSummary]
) -> None:
    settings, _ = curated
    c = by_customer(spark, settings, GOLD_CUSTOMER_360)
    assert set(c) == {"C1", "C2", "C3", "C4", "C5"}
    fields = (
        "tier",
        "language",
        "order_count",
        "recency_days",
        "frequency",
        "monetary",
        "lifetime_value",
        "avg_order_value",
        "orders_by_channel",
        "channel_mix",
        "preferred_channel",
        "days_since_last_contact",
        "open_case_count",
        "open_case_ids",
        "contact_reasons",
        "category_affinity",
        "top_category",
    )
    expected = {
        "C1": ("silver", "en", 1, 14, 1, Decimal("100.00"), Decimal("100.00"), Decimal("100.00"),
               {"web": 1}, {"web": 2, "social": 1, "call_center": 1}, "web", 1, 1, ["CS1"],
               {"complaint": 1}, {"apparel": 0.5, "beauty": 0.5}, "apparel"),
        "C2": ("bronze", "en", 2, 9, 2, Decimal("70.00"), Decimal("70.00"), Decimal("35.00"),
               {"store": 1, "web": 1}, {"store": 1, "web": 3, "call_center": 1}, "web", 0, 1,
               ["CS2"], {"return": 1}, {"beauty": 1.0}, "beauty"),
        "C3": ("gold", "en", 1, 94, 1, Decimal("600.00"), Decimal("600.00"), Decimal("600.00"),
               {"app": 1}, {"app": 2}, "app", 1, 0, None, None,
               {"electronics": 0.833, "books": 0.167}, "electronics"),
        "C4": ("bronze", "ko", 1, 2, 1, Decimal("10.00"), Decimal("10.00"), Decimal("10.00"),
               {"store": 1}, {"store": 1, "app": 1}, "app", 0, 1, ["CS4"], None,
               {"grocery": 0.5, "home": 0.5}, "grocery"),
        "C5": ("bronze", "en", 0, None, 0, Decimal("0.00"), Decimal("0.00"), None, None,
               {"call_center": 2}, "call_center", 1, 0, None, {"billing": 2, "delivery": 1},
               None, None),
    }  # fmt: skip
    assert {k: tuple(c[k][f] for f in fields) for k in c} == expected
    c1 = c["C1"]
    assert (c1["first_seen_at"], c1["last_seen_at"], c1["interaction_count"]) == (
        ts("2026-10-20 10:00"),
        ts("2026-11-02 16:00"),
        6,
    )
    assert c1["last_contact_at"] == {
        "web": ts("2026-11-01 13:00"),
        "social": ts("2026-11-01 09:10"),  # the brand's reply is not the customer's contact
        "call_center": ts("2026-11-02 16:00"),
    }
    consent = ("consent_email", "consent_sms", "consent_push", "consent_ads")
    assert [c1[k] for k in consent] == [True, False, None, True]
    assert {r["as_of"] for r in c.values()} == {AS_OF}


# --- agent_context -----------------------------------------------------------------------------


def test_agent_sees_a_case_that_went_social_web_phone(
    spark: SparkSession, curated: tuple[Settings, CurateSummary]
) -> None:
    settings, _ = curated
    c1 = by_customer(spark, settings, GOLD_AGENT_CONTEXT)["C1"]
    assert (c1["display_name"], c1["tier"], c1["language"], c1["preferred_channel"]) == (
        "Mia Park",
        "silver",
        "en",
        "web",
    )
    assert c1["consents"] == ["email", "ads"]
    assert c1["open_cases"] == [
        {
            "case_id": "CS1",
            "opened_at": ts("2026-11-01 09:05"),
            "last_activity_at": ts("2026-11-02 16:00"),
            "channel_path": ["social", "web", "call_center"],
            "channel_history": "social -> web -> call_center",
            "touches": 4,
            "last_status": "callback_scheduled",
            "reason": "complaint",
        }
    ]
    assert [i["ts"] for i in c1["last_interactions"]] == [
        ts("2026-11-02 16:00"),
        ts("2026-11-01 13:00"),
        ts("2026-11-01 09:10"),
        ts("2026-11-01 09:05"),
        ts("2026-11-01 09:00"),
        ts("2026-10-20 10:00"),
    ]
    assert c1["recent_sentiment"] == pytest.approx(-0.6)
    assert c1["failed_self_service"] == []
    assert c1["last_contact_at"] == ts("2026-11-02 16:00")
    assert (c1["next_best_action"], c1["next_best_action_rule"]) == (
        "own_the_case",
        "cross_channel_case",
    )
    assert c1["next_best_action_reason"] == (
        "Case CS1 is open and has travelled social -> web -> call_center; take ownership and "
        "do not ask the customer to repeat it."
    )


def test_agent_sees_the_failed_web_return_behind_a_call(
    spark: SparkSession, curated: tuple[Settings, CurateSummary]
) -> None:
    settings, _ = curated
    c2 = by_customer(spark, settings, GOLD_AGENT_CONTEXT)["C2"]
    failure = "Web: return request failed (wrong size): return window check failed"
    assert c2["failed_self_service"] == [
        {
            "ts": ts("2026-11-02 10:00"),
            "channel": "web",
            "type": "return_request",
            "summary": failure,
            "resolved_after": False,  # the call after it ended "unresolved"
        }
    ]
    # the failure is shown although later web activity pushed it down the web history
    assert [(i["channel"], i["type"]) for i in c2["last_interactions"]] == [
        ("web", "page_view"),
        ("call_center", "call"),
        ("web", "return_request"),
        ("web", "order"),
        ("store", "purchase"),
    ]
    assert [c["channel_history"] for c in c2["open_cases"]] == ["call_center"]
    assert c2["next_best_action"] == "complete_failed_self_service"
    assert c2["next_best_action_reason"] == (
        f"Self-service failed and nobody has fixed it since ({failure}); complete it for the "
        "customer now."
    )


def test_next_best_action_rules_in_priority_order(
    spark: SparkSession, curated: tuple[Settings, CurateSummary]
) -> None:
    settings, summary = curated
    agents = by_customer(spark, settings, GOLD_AGENT_CONTEXT)
    assert {k: (a["next_best_action_rule"], a["next_best_action_reason"]) for k, a in
            agents.items() if k in ("C3", "C4", "C5")} == {
        "C3": ("lapsing_high_value", "A gold customer whose last order was 94 days ago."),
        "C4": ("open_case", "Case CS4 is still open; last status: none."),
        "C5": ("default", "No open issue and nothing to offer."),
    }  # fmt: skip
    assert agents["C4"]["consents"] == []  # never asked is not consent
    assert summary.next_best_actions == {
        "own_the_case": 1,
        "complete_failed_self_service": 1,
        "retention_offer": 1,
        "follow_up_open_case": 1,
        "none": 1,
    }


def test_a_rule_naming_an_unknown_column_names_the_file_rule_and_column(
    spark: SparkSession,
) -> None:
    features = spark.createDataFrame([("C1", 2)], "customer_id string, open_case_count int")
    bad_when = ActionRule(id="vip", when="lifetime_valu > 10", action="a", reason="r")
    with pytest.raises(
        RuleError, match=r"rules\.yaml: next_best_actions rule 'vip'.*lifetime_valu"
    ):
        next_best_action(features, [bad_when], Path("rules.yaml"))
    bad_reason = ActionRule(id="cases", when="open_case_count > 1", action="a", reason="{tier}")
    with pytest.raises(RuleError, match=r"rule 'cases': the reason names unknown column 'tier'"):
        next_best_action(features, [bad_reason], Path("rules.yaml"))


def test_rules_file_mistakes_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("reporting_currency: USD\n")
    with pytest.raises(RuleError, match=r"rules\.yaml: .*rfm_window_days: Field required"):
        load_rules(path)


# --- journey_metrics ---------------------------------------------------------------------------


def test_journey_metrics_worked_by_hand(
    spark: SparkSession, curated: tuple[Settings, CurateSummary]
) -> None:
    settings, summary = curated
    metrics = {(r["day"], r["channel"]): r for r in rows(spark, settings, GOLD_JOURNEY_METRICS)}
    assert len(metrics) == 95 * 5  # 2026-08-01 .. 2026-11-03, every channel seen
    fields = (
        "active_customers",
        "new_adopters",
        "cumulative_adopters",
        "adoption_rate",
        "cases_started",
        "channel_switches",
        "self_service_attempts",
        "escalations_to_agent",
        "escalation_rate",
        "cases_resolved",
        "service_contacts",
        "repeat_contacts_7d",
        "repeat_contact_rate",
    )
    expected = {
        # the case page view escalates to C1's call 27 h later; the DMs repeat (call in 31 h)
        (date(2026, 11, 1), "web"): (1, 0, 2, 0.4, 0, 0, 1, 1, 1.0, 0, 0, 0, None),
        (date(2026, 11, 1), "social"): (1, 1, 1, 0.2, 1, 1, 0, 0, None, 0, 1, 1, 1.0),
        (date(2026, 11, 1), "call_center"): (1, 1, 1, 0.2, 1, 0, 0, 0, None, 0, 1, 1, 1.0),
        # the failed return escalates to the call 29 h later; the case leaves the web for a call
        (date(2026, 11, 2), "web"): (1, 0, 2, 0.4, 0, 1, 1, 1, 1.0, 0, 0, 0, None),
        (date(2026, 11, 2), "call_center"): (2, 1, 2, 0.4, 1, 0, 0, 0, None, 2, 2, 0, 0.0),
        (date(2026, 11, 3), "app"): (1, 1, 2, 0.4, 1, 0, 1, 0, 0.0, 0, 1, 0, 0.0),
        (date(2026, 11, 3), "call_center"): (1, 1, 3, 0.6, 1, 0, 0, 0, None, 0, 1, 0, 0.0),
        (date(2026, 10, 20), "web"): (1, 1, 1, 0.3333, 0, 0, 0, 0, None, 0, 0, 0, None),
        (date(2026, 9, 15), "store"): (0, 0, 0, 0.0, 0, 0, 0, 0, None, 0, 0, 0, None),
    }
    assert {k: tuple(metrics[k][f] for f in fields) for k in expected} == expected
    resolved = metrics[(date(2026, 11, 2), "call_center")]
    # CS5: 11-01 10:00 -> 11-02 12:12 (end of the resolving call) = 26.2 h; CS6: 6 min = 0.1 h
    assert resolved["mean_resolution_hours"] == pytest.approx(13.15)
    assert resolved["p90_resolution_hours"] == pytest.approx(0.1 + 0.9 * 26.1)
    report = Path(summary.report_path).read_text()
    assert report.count("<svg") == 7 and "<script" not in report


# --- idempotency and inputs --------------------------------------------------------------------


def test_rebuilding_changes_nothing_and_reads_only_silver_and_gold(
    spark: SparkSession, curated: tuple[Settings, CurateSummary]
) -> None:
    settings, first = curated
    tables = (GOLD_CUSTOMER_TIMELINE, GOLD_CUSTOMER_360, GOLD_AGENT_CONTEXT, GOLD_JOURNEY_METRICS)
    before = {t: sorted(map(repr, rows(spark, settings, t))) for t in tables}
    second = curate(spark, settings)
    assert second.rows == first.rows and second.as_of == first.as_of
    assert {t: sorted(map(repr, rows(spark, settings, t))) for t in tables} == before
    assert sorted(p.name for p in settings.lakehouse.iterdir()) == ["gold", "reports", "silver"]


# --- incremental curation (curate_customers) ---------------------------------------------------

# Interactions that reach silver after C2's and C4's curated rows were built: C2's first
# purchase (every later seq moves) and last page view, C4's support chat (its open case).
_LATE = ("pos:P20", "web:W22", "app:E40")
_CURATED = {
    GOLD_CUSTOMER_TIMELINE: ("interaction_id", CUSTOMER_TIMELINE),
    GOLD_CUSTOMER_360: ("customer_id", CUSTOMER_360),
    GOLD_AGENT_CONTEXT: ("customer_id", AGENT_CONTEXT),
}


def keyed(spark: SparkSession, settings: Settings, table: Table) -> dict[str, dict]:
    """A table's rows by key, as dicts: maps compare by content, not by entry order."""
    return {r[_CURATED[table][0]]: r for r in rows(spark, settings, table)}


def stale_rows(full: dict[Table, dict[str, dict]]) -> dict[Table, dict[str, dict]]:
    """The curated rows by key as they were before the ``_LATE`` interactions arrived (C2's
    timeline renumbered without them, C2's lifetime value without the purchase, C4 without its
    case), plus rows of C9, a customer id retired since, and a mark on each of C1's rows, which
    only a rebuild of C1 would remove."""
    timeline = {k: dict(r) for k, r in full[GOLD_CUSTOMER_TIMELINE].items() if k not in _LATE}
    for seq, k in enumerate(("web:W20", "web:W21", "call_center:K2"), start=1):
        timeline[k]["seq"] = seq
    timeline["web:W90"] = {**timeline["web:W20"], "customer_id": "C9", "interaction_id": "web:W90"}
    timeline["web:W10"]["summary"] = "stale"
    c360 = {k: dict(r) for k, r in full[GOLD_CUSTOMER_360].items()}
    c360["C2"]["lifetime_value"] = Decimal("50.00")
    c360["C1"]["tier"] = "stale"
    agents = {k: dict(r) for k, r in full[GOLD_AGENT_CONTEXT].items()}
    agents["C4"].update(open_cases=[], next_best_action="none")
    agents["C1"]["next_best_action"] = "stale"
    for by_customer_id in (c360, agents):
        by_customer_id["C9"] = {**by_customer_id["C5"], "customer_id": "C9"}
    return {GOLD_CUSTOMER_TIMELINE: timeline, GOLD_CUSTOMER_360: c360, GOLD_AGENT_CONTEXT: agents}


_TOUCHED = ("C2", "C4", "C9")


@dataclass(frozen=True)
class Curated:
    """``curate_customers`` on the stored identity tables, its rows stored after it as the
    micro-batch stores them."""

    as_of: datetime
    rows: dict[str, int]  # rows built per table
    changed: dict[str, int]  # rows the store inserted, updated or deleted per table


def curate_and_store(spark: SparkSession, settings: Settings, customer_ids: list[str]) -> Curated:
    identity = {
        t: spark.read.format("delta").load(t.path(settings))
        for t in (GOLD_IDENTITY_XREF, GOLD_CUSTOMER_PROFILE)
    }
    built = curate_customers(spark, settings, customer_ids, identity)
    rows = {t.qualified_name: df.count() for t, df in built.rows.items()}
    changed = store_customer_rows(spark, settings, customer_ids, built.rows)
    return Curated(built.as_of, rows, changed)


@pytest.fixture(scope="module")
def incremental(
    spark: SparkSession,
    curated: tuple[Settings, CurateSummary],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """A copy of the curated lakehouse whose curated rows are ``stale_rows`` and whose silver
    lacks the ``_LATE`` interactions; they are appended to silver and C2, C4 and C9 are curated
    incrementally.

    ``full`` is what ``curate`` built on the final inputs (the shared fixture, whose ``as_of``
    is ``AS_OF``, set here too), ``stale`` the rows before, ``summary`` what
    ``curate_customers`` built and storing its rows changed.
    """
    source, _ = curated
    settings = module_settings(tmp_path_factory.mktemp("incremental")).model_copy(
        update={"as_of": AS_OF}
    )
    shutil.copytree(source.lakehouse, settings.lakehouse)
    full = {t: keyed(spark, settings, t) for t in _CURATED}
    stale = stale_rows(full)
    for table, by_key in stale.items():
        save(frame(spark, list(by_key.values()), _CURATED[table][1]), settings, table)
    early, late = ([e for e in INTERACTIONS_ROWS if (e["interaction_id"] in _LATE) == is_late]
                   for is_late in (False, True))  # fmt: skip
    save(frame(spark, early, INTERACTIONS), settings, SILVER_INTERACTIONS)
    frame(spark, late, INTERACTIONS).write.format("delta").mode("append").save(
        SILVER_INTERACTIONS.path(settings)
    )
    summary = curate_and_store(spark, settings, ["C4", "C2", "C9", "C2"])
    return {"settings": settings, "full": full, "stale": stale, "summary": summary}


def test_curate_customers_gives_the_rows_a_full_curate_gives_and_touches_no_one_else(
    spark: SparkSession, incremental: dict[str, Any]
) -> None:
    settings, full, stale = incremental["settings"], incremental["full"], incremental["stale"]
    summary = incremental["summary"]
    assert summary.as_of == AS_OF
    assert summary.rows == {
        GOLD_CUSTOMER_TIMELINE.qualified_name: 7,  # C2's 5 interactions and C4's 2
        GOLD_CUSTOMER_360.qualified_name: 2,
        GOLD_AGENT_CONTEXT.qualified_name: 2,
    }
    assert summary.changed == {
        GOLD_CUSTOMER_TIMELINE.qualified_name: 7,  # 3 inserted, 3 renumbered, C9's deleted
        GOLD_CUSTOMER_360.qualified_name: 2,  # C2 updated, C9 deleted
        GOLD_AGENT_CONTEXT.qualified_name: 2,  # C4 updated, C9 deleted
    }
    for table in _CURATED:
        found = keyed(spark, settings, table)
        touched = {k: r for k, r in found.items() if r["customer_id"] in _TOUCHED}
        # C2 and C4 exactly as the full curate built them, C9 gone
        assert touched == {k: r for k, r in full[table].items() if r["customer_id"] in _TOUCHED}
        # everyone else as before, stale marks included
        others = {k: r for k, r in found.items() if r["customer_id"] not in _TOUCHED}
        assert others == {k: r for k, r in stale[table].items() if r["customer_id"] not in _TOUCHED}


def test_curate_customers_again_changes_nothing(
    spark: SparkSession, incremental: dict[str, Any]
) -> None:
    settings = incremental["settings"]

    def commits() -> dict[Table, int]:
        return {t: len(list(Path(t.path(settings), "_delta_log").glob("*.json"))) for t in _CURATED}

    before, committed = {t: keyed(spark, settings, t) for t in _CURATED}, commits()
    again = curate_and_store(spark, settings, ["C2", "C4"])
    assert again.rows == incremental["summary"].rows
    assert set(again.changed.values()) == {0}
    assert commits() == committed  # nothing differed, so no MERGE and no new table version
    assert {t: keyed(spark, settings, t) for t in _CURATED} == before


def test_replace_customer_rows_deletes_what_a_customer_no_longer_has(
    spark: SparkSession, settings: Settings
) -> None:
    table = Table(
        GOLD_CUSTOMER_360.layer,
        "replace_test",
        "replace_customer_rows test table",
        GOLD_CUSTOMER_360.stage,
    )
    schema = "customer_id string, record_id string, note string, weights map<string,int>"
    old = [
        ("A", "r1", "kept", {"x": 1, "y": 2}),
        ("A", "r2", "old", None),
        ("A", "r3", "gone", None),
        ("B", "r4", "other", None),
        ("B", "r5", "other", None),
        ("C", "r6", "retired", None),
    ]
    spark.createDataFrame(old, schema).write.format("delta").save(table.path(settings))
    new = spark.createDataFrame(
        [("A", "r1", "kept", {"y": 2, "x": 1}), ("A", "r2", "new", None), ("A", "r7", "new", None)],
        schema,
    )
    customers = ["A", "C"]

    def replace() -> int:
        return replace_customer_rows(spark, settings, table, customers, new, ["record_id"])

    def stored() -> list[tuple]:
        found = spark.read.format("delta").load(table.path(settings)).collect()
        return sorted((r.customer_id, r.record_id, r.note) for r in found)

    assert replace() == 4  # r2 updated, r7 inserted, r3 and C's r6 deleted; r1 is unchanged
    expected = [
        ("A", "r1", "kept"),
        ("A", "r2", "new"),
        ("A", "r7", "new"),
        ("B", "r4", "other"),
        ("B", "r5", "other"),
    ]
    assert stored() == expected
    assert replace() == 0
    assert stored() == expected
    stray = new.unionByName(spark.createDataFrame([("B", "r4", "moved", None)], schema))
    with pytest.raises(ValueError, match="rows of 1 customers not among"):
        replace_customer_rows(spark, settings, table, customers, stray, ["record_id"])
    assert stored() == expected  # B's stored rows are not replaced by a stray row


def test_replacing_a_customer_keeps_the_files_other_customers_share_with_them(
    spark: SparkSession, settings: Settings
) -> None:
    """A table created before it had deletion vectors gets them at its next batch overwrite;
    from then on replacing one customer marks their rows deleted instead of rewriting the
    file the other customers' rows are in."""
    table = Table(
        GOLD_CUSTOMER_360.layer,
        "dv_test",
        "a test table",
        GOLD_CUSTOMER_360.stage,
        deletion_vectors=True,
    )
    path = table.path(settings)
    schema = "customer_id string, record_id string, note string"
    rows = spark.createDataFrame([("A", "r1", "old"), ("B", "r2", "b"), ("B", "r3", "b")], schema)
    rows.coalesce(1).write.format("delta").save(path)  # as a lakehouse built before
    overwrite_table(rows.coalesce(1), settings, table)
    properties = spark.sql(f"SHOW TBLPROPERTIES delta.`{path}`").collect()
    assert {(r.key, r.value) for r in properties} >= {("delta.enableDeletionVectors", "true")}

    def files_of(customer_id: str) -> set[str]:
        stored = spark.read.format("delta").load(path).where(f"customer_id = '{customer_id}'")
        return {r.file_path for r in stored.select("_metadata.file_path").collect()}

    shared = files_of("B")
    assert files_of("A") == shared
    new = spark.createDataFrame([("A", "r1", "new")], schema)
    assert replace_customer_rows(spark, settings, table, ["A"], new, ["record_id"]) == 1
    assert files_of("B") == shared
    assert files_of("A").isdisjoint(shared)
    stored = sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())
    assert stored == [("A", "r1", "new"), ("B", "r2", "b"), ("B", "r3", "b")]
