"""Segments on real Spark + Delta, over a hand-made gold customer_360, timeline and profile.

Five customers as of 2026-11-10 12:00 UTC and three audiences, worked by hand:

- big_spenders (email): lifetime value >= 100 -> S1, S2, S3, S5 match; S2 refused email and S3
  was never asked, so both are left out and counted; members S1, S5.
- app_browsers (push): >= 2 app product views in the last 7 days -> S1 (2 views), S4 (2); S2 has
  one view too old, S5's views come after as_of. S1 refused push; member S4.
- ads_seed (ads): more than 40 spent in the last 30 days -> S1 (30 + 20), S2 (60), S4 (45); S2
  refused ads; members S1, S4.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.cli import main
from jobs.curate import checked_predicate
from jobs.segments import (
    SegmentBuildSummary,
    SegmentCounts,
    SegmentError,
    build_segments,
    export_segment,
    hashed_members,
    list_segments,
    load_segments,
    segment_candidates,
)
from schemas.catalog import (
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_SEGMENT_MEMBERSHIP,
)
from schemas.settings import PROJECT_ROOT, Settings
from schemas.tables import CUSTOMER_360, CUSTOMER_PROFILE, CUSTOMER_TIMELINE
from tests.builders import frame
from tests.test_curate import module_settings, save

AS_OF = datetime(2026, 11, 10, 12, 0)

CUSTOMERS = [
    # customer, lifetime value, consent email, push, ads
    ("S1", "500.00", True, False, True),
    ("S2", "200.00", False, True, False),
    ("S3", "150.00", None, None, None),
    ("S4", "50.00", True, True, True),
    ("S5", "1000.00", True, True, True),
]
EMAILS = {"S1": " Ann@Example.com ", "S2": "bo@example.com", "S5": "cy@example.com"}
PHONES = {"S1": "+14155550111", "S4": "+821012345678", "S5": "+14155550155"}


def activity(customer: str, at: str, channel: str, kind: str, spent: str | None = None) -> dict:
    return {
        "customer_id": customer,
        "seq": 1,
        "ts": datetime.fromisoformat(at),
        "channel": channel,
        "type": kind,
        "initiated_by": "customer",
        "amount_reporting": Decimal(spent) if spent else None,
    }


TIMELINE = [
    activity("S1", "2026-11-09 10:00", "app", "product_view"),
    activity("S1", "2026-11-10 09:00", "app", "product_view"),
    activity("S1", "2026-11-05 10:00", "web", "order", "30.00"),
    activity("S1", "2026-10-20 10:00", "store", "purchase", "20.00"),
    activity("S2", "2026-11-09 10:00", "app", "product_view"),
    activity("S2", "2026-11-01 10:00", "app", "product_view"),  # before the 7-day window
    activity("S2", "2026-11-09 11:00", "web", "order", "60.00"),
    activity("S3", "2026-11-09 10:00", "web", "page_view"),
    activity("S3", "2026-11-09 10:01", "web", "page_view"),
    activity("S4", "2026-11-05 10:00", "app", "product_view"),
    activity("S4", "2026-11-06 10:00", "app", "product_view"),
    activity("S4", "2026-11-08 10:00", "store", "purchase", "45.00"),
    activity("S5", "2026-09-01 10:00", "web", "order", "100.00"),  # before the 30-day window
    activity("S5", "2026-11-11 10:00", "app", "product_view"),  # after as_of
    activity("S5", "2026-11-11 10:05", "app", "product_view"),
]

DEFINITIONS = {
    "big_spenders.yaml": """
name: big_spenders
description: Customers worth at least 100.
consent: email
where: lifetime_value >= 100
""",
    "app_browsers.yaml": """
name: app_browsers
description: Browsing in the app this week.
consent: push
windows:
  app_views_7d: {days: 7, channels: [app], types: [product_view]}
where: app_views_7d >= 2
""",
    "ads_seed.yaml": """
name: ads_seed
description: Spent more than 40 in the last 30 days.
consent: ads
windows:
  spend_30d: {days: 30, types: [order, purchase], measure: amount}
where: spend_30d > 40
""",
}


def write_definitions(folder: Path, definitions: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in definitions.items():
        (folder / name).write_text(text)
    return folder


def write_gold(spark: SparkSession, settings: Settings) -> None:
    c360 = [
        {
            "customer_id": c,
            "lifetime_value": Decimal(ltv),
            "order_count": 1,
            "consent_email": email,
            "consent_push": push,
            "consent_ads": ads,
            "as_of": AS_OF,
        }
        for c, ltv, email, push, ads in CUSTOMERS
    ]
    profiles: list[dict[str, Any]] = [
        {
            "customer_id": c,
            "email": EMAILS.get(c),
            "phone": PHONES.get(c),
            "email_opt_in": email,
            "push_opt_in": push,
            "ads_opt_in": ads,
            "record_count": 1,
            "model_version": "test",
            "resolved_at": AS_OF,
        }
        for c, _, email, push, ads in CUSTOMERS
    ]
    save(frame(spark, c360, CUSTOMER_360), settings, GOLD_CUSTOMER_360)
    save(frame(spark, TIMELINE, CUSTOMER_TIMELINE), settings, GOLD_CUSTOMER_TIMELINE)
    save(frame(spark, profiles, CUSTOMER_PROFILE), settings, GOLD_CUSTOMER_PROFILE)


@pytest.fixture(scope="module")
def built(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, SegmentBuildSummary]]:
    root = tmp_path_factory.mktemp("segments")
    settings = module_settings(root).model_copy(
        update={"segments_dir": write_definitions(root / "definitions", DEFINITIONS)}
    )
    write_gold(spark, settings)
    yield settings, build_segments(spark, settings)


def members(spark: SparkSession, settings: Settings) -> set[tuple[str, str]]:
    table = spark.read.format("delta").load(GOLD_SEGMENT_MEMBERSHIP.path(settings))
    return {(r.segment, r.customer_id) for r in table.collect()}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_build_applies_predicates_windows_and_consent(
    spark: SparkSession, built: tuple[Settings, SegmentBuildSummary]
) -> None:
    settings, summary = built
    assert summary.segments == {
        "big_spenders": SegmentCounts("email", matched=4, excluded_no_consent=2, members=2),
        "app_browsers": SegmentCounts("push", matched=2, excluded_no_consent=1, members=1),
        "ads_seed": SegmentCounts("ads", matched=3, excluded_no_consent=1, members=2),
    }
    assert summary.as_of == "2026-11-10 12:00:00"
    assert members(spark, settings) == {
        ("big_spenders", "S1"),
        ("big_spenders", "S5"),
        ("app_browsers", "S4"),
        ("ads_seed", "S1"),
        ("ads_seed", "S4"),
    }


def test_rebuilding_gives_the_same_membership(
    spark: SparkSession, built: tuple[Settings, SegmentBuildSummary]
) -> None:
    settings, first = built
    before = members(spark, settings)
    assert build_segments(spark, settings) == first
    assert members(spark, settings) == before


def test_list_shows_sizes_exclusions_and_overlaps(
    spark: SparkSession, built: tuple[Settings, SegmentBuildSummary]
) -> None:
    settings, summary = built
    listing = list_segments(spark, settings)
    assert [(s.name, s.consent, s.built, s.counts) for s in listing.segments] == [
        ("ads_seed", "ads", True, summary.segments["ads_seed"]),
        ("app_browsers", "push", True, summary.segments["app_browsers"]),
        ("big_spenders", "email", True, summary.segments["big_spenders"]),
    ]
    assert listing.overlaps == {("ads_seed", "big_spenders"): 1, ("ads_seed", "app_browsers"): 1}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_has_normalized_hashes_and_no_raw_identifiers(
    spark: SparkSession, built: tuple[Settings, SegmentBuildSummary], tmp_path: Path, fmt: str
) -> None:
    settings, _ = built
    output = tmp_path / "out" / f"ads_seed.{fmt}"
    summary = export_segment(spark, settings, "ads_seed", fmt, output)  # type: ignore[arg-type]
    assert (summary.members, summary.exported, summary.dropped_no_identifier) == (2, 2, 0)
    assert [p.name for p in output.parent.iterdir()] == [output.name]  # one file, no leftovers
    table = pd.read_csv(output) if fmt == "csv" else pd.read_parquet(output)
    assert list(table.columns) == ["segment", "customer_id", "email_sha256", "phone_sha256"]
    rows = {r.customer_id: r for r in table.itertuples()}
    assert rows["S1"].email_sha256 == sha256("ann@example.com")  # trimmed, lower-case
    assert rows["S1"].phone_sha256 == sha256("+14155550111")  # E.164
    assert pd.isna(rows["S4"].email_sha256)
    assert rows["S4"].phone_sha256 == sha256("+821012345678")
    raw = output.read_bytes().lower()
    for value in ("ann@example.com", "example.com", "4155550111", "1012345678", "01012345678"):
        assert value.encode() not in raw


def test_export_rechecks_consent_against_the_current_profile(spark: SparkSession) -> None:
    membership = spark.createDataFrame([("ads_seed", "S4")], "segment string, customer_id string")
    withdrawn = frame(
        spark,
        [{"customer_id": "S4", "phone": PHONES["S4"], "ads_opt_in": False, "record_count": 1,
          "model_version": "t", "resolved_at": AS_OF}],
        CUSTOMER_PROFILE,
    )  # fmt: skip
    (row,) = hashed_members(membership, withdrawn, "ads").collect()
    assert (row._consented, row._identified) == (False, True)


def test_export_of_an_unbuilt_segment_names_it(
    spark: SparkSession, built: tuple[Settings, SegmentBuildSummary], tmp_path: Path
) -> None:
    settings, _ = built
    with pytest.raises(SegmentError, match=r"segment 'nope' is not built \(built segments: ads"):
        export_segment(spark, settings, "nope", "csv", tmp_path / "x.csv")


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("lifetime_valu >= 100", r"unknown column 'lifetime_valu'"),
        ("lifetime_value + 1", r"the predicate gives decimal\(\d+,\d+\), not true/false"),
        ("lifetime_value >= AND 1", r"the predicate does not parse"),
        ("reflect('java.util.UUID', 'randomUUID') = ''", r"the predicate may not call Java"),
    ],
)
def test_a_wrong_predicate_names_file_segment_and_column_and_changes_nothing(
    spark: SparkSession,
    built: tuple[Settings, SegmentBuildSummary],
    tmp_path: Path,
    where: str,
    message: str,
) -> None:
    settings, _ = built
    bad = {"broken.yaml": f"name: broken\ndescription: d\nconsent: email\nwhere: {where}\n"}
    folder = write_definitions(tmp_path / "definitions", {**DEFINITIONS, **bad})
    before = members(spark, settings)
    with pytest.raises(SegmentError, match=rf"broken\.yaml: segment 'broken': {message}"):
        build_segments(spark, settings.model_copy(update={"segments_dir": folder}))
    assert members(spark, settings) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ndescription: d\nconsent: fax\nwhere: 'true'\n", r"segment 'x': consent: "),
        ("name: x\ndescription: d\nconsent: sms\nwher: 'true'\n", r"segment 'x': where: Field"),
        ("name: X Y\ndescription: d\nconsent: sms\nwhere: 'true'\n", r"segment 'X Y': name: "),
        (
            "name: x\ndescription: d\nconsent: sms\nwhere: 'true'\nwindows: {A-b: {days: 1}}\n",
            r"segment 'x': windows\.A-b\.\[key\]",
        ),
    ],
)
def test_definition_mistakes_name_file_segment_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(SegmentError, match=rf"bad\.yaml: {message}"):
        load_segments(tmp_path)


def test_a_window_may_not_hide_a_customer_360_column(
    spark: SparkSession, built: tuple[Settings, SegmentBuildSummary], tmp_path: Path
) -> None:
    settings, _ = built
    text = "name: x\ndescription: d\nconsent: sms\nwhere: 'true'\nwindows: {tier: {days: 1}}\n"
    (segment,) = load_segments(write_definitions(tmp_path, {"x.yaml": text}))
    c360 = spark.read.format("delta").load(GOLD_CUSTOMER_360.path(settings))
    with pytest.raises(SegmentError, match=r"x\.yaml: segment 'x': window 'tier' is already"):
        segment_candidates(c360, c360, segment, F.lit(AS_OF))


def test_shipped_definitions_are_valid(
    spark: SparkSession, built: tuple[Settings, SegmentBuildSummary]
) -> None:
    settings, _ = built
    c360 = spark.read.format("delta").load(GOLD_CUSTOMER_360.path(settings))
    timeline = spark.read.format("delta").load(GOLD_CUSTOMER_TIMELINE.path(settings))
    shipped = load_segments(PROJECT_ROOT / "jobs" / "segment_definitions")
    assert len(shipped) >= 3
    for segment in shipped:
        candidates = segment_candidates(c360, timeline, segment, F.lit(AS_OF))
        checked_predicate(candidates, segment.definition.where, segment.label)


def test_segments_stay_built_after_later_commits_to_their_membership(
    spark: SparkSession,
    built: tuple[Settings, SegmentBuildSummary],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An erasure commits a delete and a purge to gold.segment_membership; the build's counts
    used to live in the membership's last commit, so export then said "not built"."""
    settings, summary = built
    lakehouse = tmp_path / "lakehouse"
    shutil.copytree(settings.lakehouse, lakehouse)
    copy = settings.updated(lakehouse=lakehouse)
    membership = DeltaTable.forPath(spark, GOLD_SEGMENT_MEMBERSHIP.path(copy))
    membership.delete(F.col("customer_id") == "S5")  # as an erasure of S5 does
    spark.sql(f"REORG TABLE delta.`{GOLD_SEGMENT_MEMBERSHIP.path(copy)}` APPLY (PURGE)")
    monkeypatch.setenv("OMNICDP_SEGMENTS_DIR", str(settings.segments_dir))
    output = tmp_path / "big_spenders.csv"

    exported = main(["--lakehouse", str(lakehouse), "segment", "export", "big_spenders",
                     "--output", str(output)])  # fmt: skip
    listed = main(["--lakehouse", str(lakehouse), "segment", "list"])

    assert (exported, listed) == (0, 0), capsys.readouterr().err
    assert list(pd.read_csv(output).customer_id) == ["S1"]  # S5 is gone, the segment is not
    printed = capsys.readouterr().out
    assert "not built" not in printed
    assert list_segments(spark, copy).segments[2].counts == summary.segments["big_spenders"]
