"""Identity resolution on real Spark + Delta + Splink, over a small hand-built population.

Fifteen-odd people seen through five sources: duplicates with typos, swapped name order, a
day/month swapped birth date, a household sharing phone, address and surname, two different
people called John Smith and two Kims. One model is trained once per module (training is the
slow part) and reused by the tests, which each check one property of the gold tables.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from identity import evaluate, resolve_identities, train_model
from identity.explain import customer_why
from identity.names import split_full_name
from jobs.cli import main
from jobs.lakehouse.spark_schema import spark_schema
from schemas.catalog import (
    GOLD_CUSTOMER_PROFILE,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
)
from schemas.settings import Settings
from schemas.tables import CUSTOMER_PROFILE, CUSTOMER_RECORDS, IDENTITY_XREF, INTERACTIONS
from tests.builders import frame, record, table_row, xref_rows

MUELLER_HOME = {
    "phone": "+498930124477",
    "address_line": "lindenweg 12",
    "postcode": "80331",
    "city": "muenchen",
    "country": "DE",
}


def rec(person: str, source: str, key: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    """One silver customer record of ``person`` (the truth label travels beside it)."""
    return person, record(source, key, **fields)


def population() -> list[tuple[str, dict[str, Any]]]:
    """(person, record) pairs; dob as date, everything normalized the way silver is."""
    anna = {"dob": date(1985, 3, 14), "phone": "+4915177730261", "country": "DE"}
    anna_home = {"address_line": "hauptstrasse 5", "postcode": "10115", "city": "berlin"}
    minji = {"phone": "+821055512834", "country": "KR"}
    return [
        # Anna: six records, typos in email, surname and the name as heard on the phone.
        rec(
            "anna",
            "web",
            "anna.schmidt@example.de",
            first_name="anna",
            last_name="schmidt",
            email="anna.schmidt@example.de",
            email_opt_in=True,
            sms_opt_in=True,
            **anna,
            **anna_home,
        ),
        rec(
            "anna",
            "web",
            "anna.schmidt@exmaple.de",
            first_name="anna",
            last_name="schmidt",
            email="anna.schmidt@exmaple.de",
            email_opt_in=False,
            dob=date(1985, 3, 14),
            address_line="hauptstr 5",
            postcode="10115",
            city="berlin",
            country="DE",
            last_seen_at=datetime(2026, 7, 1),
        ),
        rec(
            "anna",
            "app",
            "A1001",
            first_name="anna",
            last_name="schmid",
            email="anna.schmidt@example.de",
            app_account_id="A1001",
            push_opt_in=True,
            **anna,
        ),
        rec(
            "anna",
            "pos",
            "L5001",
            full_name="anna schmidt",
            phone=anna["phone"],
            loyalty_id="L5001",
            country="DE",
        ),
        rec("anna", "call_center", "CASE-1", full_name="ana schmitt", phone=anna["phone"]),
        rec(
            "anna",
            "social",
            "anna_s",
            full_name="anna schmidt",
            social_handle="anna_s",
            email="anna.schmidt@example.de",
        ),
        # The Mueller household: same home phone, address and surname; different people.
        rec(
            "thomas",
            "web",
            "thomas.mueller@example.de",
            first_name="thomas",
            last_name="mueller",
            dob=date(1970, 5, 2),
            email="thomas.mueller@example.de",
            **MUELLER_HOME,
        ),
        rec(
            "thomas",
            "pos",
            "L5002",
            full_name="thomas mueller",
            phone=MUELLER_HOME["phone"],
            loyalty_id="L5002",
        ),
        rec(
            "thomas", "call_center", "CASE-2", full_name="tomas muller", phone=MUELLER_HOME["phone"]
        ),
        rec(
            "sabine",
            "web",
            "sabine.m@example.de",
            first_name="sabine",
            last_name="mueller",
            dob=date(1972, 11, 23),
            email="sabine.m@example.de",
            **MUELLER_HOME,
        ),
        rec(
            "sabine",
            "app",
            "A1002",
            first_name="sabine",
            last_name="mueller",
            dob=date(1972, 11, 23),
            email="sabine.m@example.de",
            phone=MUELLER_HOME["phone"],
        ),
        rec(
            "sabine",
            "pos",
            "L5003",
            full_name="sabine mueller",
            phone=MUELLER_HOME["phone"],
            loyalty_id="L5003",
        ),
        rec(
            "lukas",
            "web",
            "lukas.mueller01@example.de",
            first_name="lukas",
            last_name="mueller",
            dob=date(2001, 8, 9),
            email="lukas.mueller01@example.de",
            **MUELLER_HOME,
        ),
        rec(
            "lukas",
            "app",
            "A1003",
            first_name="lukas",
            last_name="mueller",
            dob=date(2001, 8, 9),
            email="lukas.mueller01@example.de",
            phone="+4917612340000",
        ),
        rec(
            "lukas",
            "social",
            "lukasm",
            full_name="lukas mueller",
            social_handle="lukasm",
            email="lukas.mueller01@example.de",
        ),
        # Minji Kim: the till and the call center write the surname first.
        rec(
            "minji",
            "app",
            "A2001",
            first_name="minji",
            last_name="kim",
            dob=date(1992, 7, 21),
            email="minji.kim@example.kr",
            **minji,
        ),
        rec(
            "minji",
            "web",
            "minji.kim@example.kr",
            first_name="minji",
            last_name="kim",
            dob=date(1992, 7, 21),
            email="minji.kim@example.kr",
            address_line="gangnam-daero 1",
            postcode="06000",
            city="seoul",
            country="KR",
        ),
        rec("minji", "pos", "L6001", full_name="kim minji", loyalty_id="L6001", **minji),
        rec("minji", "call_center", "CASE-3", full_name="kim minji", phone=minji["phone"]),
        # Another Kim.
        rec(
            "jisoo",
            "web",
            "jisoo.kim@example.kr",
            first_name="jisoo",
            last_name="kim",
            dob=date(1995, 1, 30),
            email="jisoo.kim@example.kr",
            phone="+821087654321",
        ),
        rec(
            "jisoo",
            "pos",
            "L6002",
            full_name="kim jisoo",
            phone="+821087654321",
            loyalty_id="L6002",
        ),
        # Two different John Smiths.
        rec(
            "john1",
            "web",
            "jsmith@example.com",
            first_name="john",
            last_name="smith",
            dob=date(1980, 1, 1),
            email="jsmith@example.com",
            phone="+12025550101",
            address_line="1 main st",
            postcode="20001",
            city="washington",
        ),
        rec(
            "john1",
            "pos",
            "L7001",
            full_name="john smith",
            phone="+12025550101",
            loyalty_id="L7001",
        ),
        rec(
            "john2",
            "web",
            "john.smith75@example.com",
            first_name="john",
            last_name="smith",
            dob=date(1975, 6, 30),
            email="john.smith75@example.com",
            phone="+13125550199",
            address_line="9 lake ave",
            postcode="60601",
            city="chicago",
        ),
        rec("john2", "call_center", "CASE-4", full_name="jon smith", phone="+13125550199"),
        # Maria: the app has her birth date with day and month swapped.
        rec(
            "maria",
            "web",
            "maria.garcia@example.es",
            first_name="maria",
            last_name="garcia",
            dob=date(1990, 2, 3),
            email="maria.garcia@example.es",
            phone="+34612983411",
        ),
        rec(
            "maria",
            "app",
            "A3001",
            first_name="maria",
            last_name="garcia",
            dob=date(1990, 3, 2),
            email="maria.garcia@example.es",
            phone="+34612983411",
        ),
        rec(
            "maria",
            "social",
            "mariag",
            full_name="maria garcia",
            phone="+34612983411",
            social_handle="mariag",
        ),
        rec(
            "pierre",
            "web",
            "pierre.dubois@example.fr",
            first_name="pierre",
            last_name="dubois",
            dob=date(1988, 12, 12),
            email="pierre.dubois@example.fr",
            address_line="12 rue de la paix",
            postcode="75002",
            city="paris",
        ),
        rec(
            "pierre",
            "social",
            "pdubois",
            full_name="pierre dubois",
            social_handle="pdubois",
            email="pierre.dubois@example.fr",
        ),
        rec(
            "liwei", "pos", "L8001", full_name="li wei", phone="+8613800138000", loyalty_id="L8001"
        ),
        rec(
            "olga",
            "app",
            "A4001",
            first_name="olga",
            last_name="ivanova",
            dob=date(1983, 4, 4),
            email="olga.ivanova@example.com",
            phone="+79164820113",
        ),
        rec(
            "olga",
            "web",
            "olga.ivanova@example.com",
            first_name="olga",
            last_name="ivanova",
            dob=date(1983, 4, 4),
            email="olga.ivanova@example.com",
        ),
        rec("olga", "call_center", "CASE-5", full_name="olga ivanova", phone="+79164820113"),
        rec(
            "ahmed",
            "pos",
            "L9001",
            full_name="ahmed khan",
            phone="+447700900123",
            loyalty_id="L9001",
        ),
        rec("ahmed", "call_center", "CASE-6", full_name="ahmed khan", phone="+447700900123"),
        rec("ahmed", "call_center", "CASE-7", full_name="ahmad khan", phone="+447700900123"),
        rec(
            "sophie",
            "web",
            "sophie.martin@example.fr",
            first_name="sophie",
            last_name="martin",
            dob=date(1993, 5, 5),
            email="sophie.martin@example.fr",
            phone="+33614420937",
            address_line="3 avenue foch",
            postcode="75116",
            city="paris",
        ),
        rec(
            "sophie",
            "app",
            "A5001",
            first_name="sophie",
            last_name="martin",
            dob=date(1993, 5, 5),
            email="sophie.martin@example.fr",
            phone="+33614420937",
        ),
        rec(
            "david",
            "web",
            "david.lee@example.com",
            first_name="david",
            last_name="lee",
            dob=date(1987, 10, 10),
            email="david.lee@example.com",
            phone="+14155550123",
        ),
        rec(
            "david", "pos", "L9101", full_name="david lee", phone="+14155550123", loyalty_id="L9101"
        ),
        rec(
            "emma",
            "web",
            "emma.w@example.co.uk",
            first_name="emma",
            last_name="wilson",
            dob=date(2000, 2, 29),
            email="emma.w@example.co.uk",
            phone="+447911123456",
        ),
        rec("sunny", "social", "sunny88", full_name="sunny", social_handle="sunny88"),
    ]


def interactions() -> list[dict[str, Any]]:
    """Anna's complaint: a DM and a call under one case id (the call center's record key)."""
    return [
        table_row(
            INTERACTIONS,
            interaction_id=f"i{n}",
            source=source,
            channel=source,
            record_id=rid,
            ts=datetime(2026, 5, n),
            type=kind,
            case_id="CASE-1",
            source_file=f"{source}/2026-05-0{n}/x",
            line_no=n,
        )
        for n, (source, rid, kind) in enumerate(
            [
                ("social", "social:anna_s", "dm_inbound"),
                ("call_center", "call_center:CASE-1", "call"),
            ],
            start=1,
        )
    ]


def write_silver(spark: SparkSession, settings: Settings) -> None:
    """The population as silver.customer_records and its cases as silver.interactions."""
    for table, rows, schema in (
        (SILVER_CUSTOMER_RECORDS, [row for _, row in population()], CUSTOMER_RECORDS),
        (SILVER_INTERACTIONS, interactions(), INTERACTIONS),
    ):
        frame(spark, rows, schema).write.format("delta").mode("overwrite").save(
            table.path(settings)
        )


def columns(schema: StructType) -> list[tuple[str, str]]:
    """Names and types (Delta reads every column back as nullable)."""
    return [(f.name, f.dataType.simpleString()) for f in schema.fields]


def xref_map(spark: SparkSession, settings: Settings) -> dict[str, str]:
    rows = spark.read.format("delta").load(GOLD_IDENTITY_XREF.path(settings)).collect()
    return {r.record_id: r.customer_id for r in rows}


def customers_of(ids: dict[str, str], person: str) -> set[str]:
    return {ids[row["record_id"]] for p, row in population() if p == person}


@pytest.fixture(scope="module")
def resolved(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A lakehouse with the population in silver, a trained model and one resolution run."""
    root = tmp_path_factory.mktemp("identity")
    settings = Settings(lakehouse=root / "lakehouse", spark_master="local[2]", shuffle_partitions=4)
    write_silver(spark, settings)
    train_model(spark, settings)
    summary = resolve_identities(spark, settings)
    assert not summary.trained  # the model trained above was reused
    return settings


def test_training_saves_a_versioned_model(resolved: Settings) -> None:
    saved = json.loads(resolved.resolved_model_path.read_text())
    assert saved["model_version"].startswith("m")
    assert saved["record_count"] == len(population())
    assert saved["splink_version"] == "5.0.0"
    assert saved["splink_settings"]["link_type"] == "dedupe_only"
    assert saved["splink_settings"]["unique_id_column_name"] == "record_id"
    archived = resolved.resolved_model_path.parent / "versions" / f"{saved['model_version']}.json"
    assert archived.exists()


def test_every_record_is_in_the_xref_exactly_once(spark: SparkSession, resolved: Settings) -> None:
    xref = spark.read.format("delta").load(GOLD_IDENTITY_XREF.path(resolved))
    assert columns(xref.schema) == columns(spark_schema(IDENTITY_XREF))
    ids = [r.record_id for r in xref.select("record_id").collect()]
    assert sorted(ids) == sorted(row["record_id"] for _, row in population())
    sizes = {r.customer_id: r["count"] for r in xref.groupBy("customer_id").count().collect()}
    assert all(sizes[r.customer_id] == r.cluster_size for r in xref.collect())


def test_duplicates_with_typos_merge(spark: SparkSession, resolved: Settings) -> None:
    ids = xref_map(spark, resolved)
    for person in ("anna", "minji", "maria", "ahmed", "olga", "thomas", "sabine", "lukas"):
        assert len(customers_of(ids, person)) == 1, person


def test_household_and_namesakes_stay_apart(spark: SparkSession, resolved: Settings) -> None:
    ids = xref_map(spark, resolved)
    for a, b in (
        ("thomas", "sabine"),
        ("thomas", "lukas"),
        ("sabine", "lukas"),
        ("john1", "john2"),
        ("minji", "jisoo"),
    ):
        assert not customers_of(ids, a) & customers_of(ids, b), (a, b)


def test_customer_ids_are_stable_on_rerun(spark: SparkSession, resolved: Settings) -> None:
    before = xref_map(spark, resolved)
    resolve_identities(spark, resolved)
    assert xref_map(spark, resolved) == before
    anna = before["pos:L5001"]
    smallest = min(rid for rid, cid in before.items() if cid == anna)
    assert anna == "C" + hashlib.sha256(smallest.encode()).hexdigest()[:12]


def links_of(spark: SparkSession, settings: Settings) -> dict[tuple[str, str], float]:
    links = spark.read.format("delta").load(GOLD_IDENTITY_LINKS.path(settings))
    return {
        (r.record_id_l, r.record_id_r): r.match_probability
        for r in links.select("record_id_l", "record_id_r", "match_probability").collect()
    }


def test_both_engines_resolve_the_same_silver_into_the_same_customers(
    spark: SparkSession, resolved: Settings, tmp_path: Path
) -> None:
    """The model trained on DuckDB (the default on a local master), loaded by Splink on Spark
    over the same silver: the same scored pairs, the same customers.

    Probabilities may differ in the last digits (the engines' floating point and similarity
    functions are separate implementations), so they are compared to 1e-9.
    """
    on_spark = Settings(
        lakehouse=tmp_path / "lakehouse",
        spark_master="local[2]",
        shuffle_partitions=4,
        identity_engine="spark",
        model_path=resolved.resolved_model_path,
    )
    assert resolved.resolved_identity_engine == "duckdb"
    write_silver(spark, on_spark)
    assert not resolve_identities(spark, on_spark).trained
    duckdb_links, spark_links = links_of(spark, resolved), links_of(spark, on_spark)
    assert duckdb_links.keys() == spark_links.keys()
    assert max(abs(duckdb_links[k] - spark_links[k]) for k in duckdb_links) < 1e-9
    assert xref_map(spark, on_spark) == xref_map(spark, resolved)


def test_links_carry_evidence_without_pii(spark: SparkSession, resolved: Settings) -> None:
    links = spark.read.format("delta").load(GOLD_IDENTITY_LINKS.path(resolved))
    for col in (
        "record_id_l",
        "record_id_r",
        "match_weight",
        "match_probability",
        "gamma_name",
        "mw_name",
        "gamma_phone",
        "mw_phone",
        "model_version",
    ):
        assert col in links.columns
    assert not {"first_name_l", "email_l", "phone_l"} & set(links.columns)
    assert links.filter("record_id_l >= record_id_r").count() == 0


def test_profile_survivorship_and_consent(spark: SparkSession, resolved: Settings) -> None:
    ids = xref_map(spark, resolved)
    profiles = spark.read.format("delta").load(GOLD_CUSTOMER_PROFILE.path(resolved))
    assert columns(profiles.schema) == columns(spark_schema(CUSTOMER_PROFILE))
    assert profiles.count() == len(set(ids.values()))
    anna = profiles.filter(profiles.customer_id == ids["pos:L5001"]).first()
    assert anna.record_count == 6
    assert anna.email_opt_in is False  # one record said no: no wins
    assert anna.sms_opt_in is True
    assert anna.ads_opt_in is None  # nobody said anything: unknown, not consent
    assert anna.loyalty_ids == ["L5001"]
    assert anna.sources == ["app", "call_center", "pos", "social", "web"]
    # The shipped rules: the most complete record with an address is the first web record.
    assert anna.provenance.address.record_id == "web:anna.schmidt@example.de"
    assert anna.provenance.address.rule == "most_complete"
    assert (anna.first_name, anna.last_name) == ("anna", "schmidt")
    assert anna.dob == date(1985, 3, 14)
    assert (anna.provenance.dob.source, anna.provenance.dob.rule) == ("app", "source_priority")
    assert anna.provenance.email_opt_in.record_id == "web:anna.schmidt@exmaple.de"  # the no


def test_evaluate_counts_pairs_and_bcubed(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    # Persons: A = a1 a2 a3, B = b1 b2, C = c1. Customers: X = a1 a2 b1, Y = a3, Z = b2 c1.
    # d1 is resolved but not in the truth; e1 is in the truth but was never resolved.
    clusters = {"a1": "X", "a2": "X", "b1": "X", "a3": "Y", "b2": "Z", "c1": "Z", "d1": "W"}
    xref = xref_rows({f"pos:{k}": c for k, c in clusters.items()}, datetime(2026, 6, 1))
    frame(spark, xref, IDENTITY_XREF).write.format("delta").save(GOLD_IDENTITY_XREF.path(settings))
    truth = tmp_path / "truth.csv"
    people = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "c1": "C", "e1": "E"}
    truth.write_text(
        "source,source_key,person_id\n" + "".join(f"pos,{k},{p}\n" for k, p in people.items())
    )

    result = evaluate(spark, settings, truth)

    assert (
        result.records_evaluated,
        result.records_missing_from_xref,
        result.records_missing_from_truth,
    ) == (6, 1, 1)
    # Pairs: predicted X 3 + Z 1 = 4; true A 3 + B 1 = 4; correct only (a1, a2).
    assert (result.predicted_pairs, result.true_pairs, result.correct_pairs) == (4, 4, 1)
    assert result.pairwise_precision == result.pairwise_recall == result.pairwise_f1 == 0.25
    # B-cubed precision: a1 2/3, a2 2/3, b1 1/3, a3 1, b2 1/2, c1 1/2 -> 11/3 over 6 records;
    # recall: a1 2/3, a2 2/3, a3 1/3, b1 1/2, b2 1/2, c1 1 -> the same 11/3.
    assert result.bcubed_precision == pytest.approx(11 / 18)
    assert result.bcubed_recall == pytest.approx(11 / 18)
    assert (result.persons_split, result.customers_merging_persons) == (2, 2)
    assert result.to_dict()["pairwise_f1"] == 0.25


def test_names_are_split_whatever_the_order(spark: SparkSession) -> None:
    names = ["kim min ji", "min-ji kim", "mr kim", "shirley", "anna schmidt", "kim smith"]
    countries = ["KR", "KR", "KR", "US", "DE", "US"]
    rows = list(zip(names, countries, strict=True))
    df = spark.createDataFrame(rows, "full_name string, c string")
    given, family = split_full_name(F.col("full_name"), F.col("c") == "KR")
    got = [tuple(r) for r in df.select(given, family).collect()]
    assert got == [
        ("minji", "kim"),
        ("minji", "kim"),
        (None, "kim"),
        ("shirley", None),
        ("anna", "schmidt"),
        ("kim", "smith"),
    ]


def test_explain_shows_each_comparison_weight_without_values(
    spark: SparkSession, resolved: Settings
) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "--lakehouse",
                str(resolved.lakehouse),
                "identity",
                "explain",
                "app:A1001",
                "pos:L5001",
            ]
        )
    printed = out.getvalue()
    assert code == 0, printed
    lines = {line.split("│")[1].strip(): line for line in printed.splitlines() if "│" in line}
    assert {"prior", "name", "dob", "email", "phone", "address", "case", "total"} <= set(lines)
    probability = float(printed.split("match probability:")[1].split()[0])
    assert probability > resolved.match_threshold
    chart = resolved.reports_dir / "identity" / "explain_waterfall.html"
    html = chart.read_text()
    assert "waterfall" in html.lower() or "vega" in html.lower()
    for person, row in population():
        if person == "anna":
            for value in (row.get("email"), row.get("phone"), row.get("last_name")):
                assert not value or value not in printed + html


def test_explain_of_an_unknown_record_names_the_argument_not_the_value(
    resolved: Settings,
) -> None:
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(
            [
                "--lakehouse",
                str(resolved.lakehouse),
                "identity",
                "explain",
                "app:A1001",
                "web:x@y.z",
            ]
        )
    assert code == 1
    assert "RECORD_B is not a record" in err.getvalue()
    assert "x@y.z" not in err.getvalue()


def test_why_lists_the_records_and_the_links_that_hold_a_customer(
    spark: SparkSession, resolved: Settings
) -> None:
    anna = xref_map(spark, resolved)["pos:L5001"]
    why = customer_why(spark, resolved, anna)
    annas = sorted(row["record_id"] for person, row in population() if person == "anna")
    assert [r for r, _ in why.records] == annas
    assert why.links and why.links_total >= len(annas) - 1  # a spanning tree at least
    for link in why.links:
        assert {link.record_id_l, link.record_id_r} <= set(annas)
        assert link.match_probability >= resolved.match_threshold
        assert "name" in link.match_weights


def test_evaluation_report_has_the_threshold_curve_and_model_charts(
    spark: SparkSession, resolved: Settings, tmp_path: Path
) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text(
        "source,source_key,person_id\n"
        + "".join(f"{r['source']},{r['source_key']},{p}\n" for p, r in population())
    )
    result = evaluate(spark, resolved, truth)
    report = resolved.reports_dir / "identity"
    curve = json.loads((report / "evaluation.json").read_text())["threshold_curve"]
    assert [c["threshold"] for c in curve] == [t / 100 for t in range(1, 100)]
    recalls = [c["recall"] for c in curve]
    assert recalls == sorted(recalls, reverse=True)  # a stricter threshold never finds more
    assert all(0 <= c["precision"] <= 1 for c in curve)
    page = (report / "evaluation.html").read_text()
    assert "<polyline" in page and "Threshold curve" in page
    assert 'href="match_weights.html"' in page
    assert f"{result.pairwise_f1:.4f}" in page
