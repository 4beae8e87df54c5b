"""Stable customer ids across resolution runs, on real Spark and Delta.

Each test is a sequence of runs: clusters as clustering would hand them over (record ->
cluster), given to the function ``resolve_identities`` calls to assign ids against the previous
gold.identity_xref and write the xref and the history. The linkage itself is covered in
test_identity.py; here the clusters are given so every merge and split is exactly the one
under test.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest
from pyspark.sql import DataFrame, SparkSession

from identity.stable_ids import (
    assign_ids,
    history_events,
    previous_ids,
    record_history,
    retired_ids,
    write_ids,
)
from schemas.catalog import GOLD_CUSTOMER_ID_HISTORY, GOLD_IDENTITY_XREF
from schemas.settings import Settings
from tests.builders import clusters_frame


def first_id(record_id: str) -> str:
    """The id a first run gives a cluster: from its smallest record id."""
    return "C" + hashlib.sha256(record_id.encode()).hexdigest()[:12]


def run(spark: SparkSession, settings: Settings, clusters: dict[str, list[str]]) -> dict:
    """One resolution run on ``clusters`` (cluster -> record ids); the new record -> id map."""
    frame = clusters_frame(spark, clusters)
    previous = previous_ids(spark, settings)
    write_ids(spark, settings, frame, previous, datetime(2026, 11, 24), "m-test")
    xref = spark.read.format("delta").load(GOLD_IDENTITY_XREF.path(settings))
    return {r.record_id: r.customer_id for r in xref.collect()}


def history(spark: SparkSession, settings: Settings) -> DataFrame:
    return spark.read.format("delta").load(GOLD_CUSTOMER_ID_HISTORY.path(settings))


def events(spark: SparkSession, settings: Settings) -> set[tuple[str, str, str, int]]:
    rows = history(spark, settings).collect()
    return {(r.event, r.previous_id, r.current_id, r.records) for r in rows}


def retired(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """Retired id -> the id it lives on as, as consumers resolve it."""
    rows = retired_ids(history(spark, settings)).collect()
    return {r.retired_id: r.surviving_id for r in rows}


ANNA_AND_BOB_APART = {"a": ["web:anna", "pos:1", "app:a1"], "b": ["web:bob", "pos:2"]}


@pytest.fixture
def two_people(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """First run: Anna (three records) and Bob (two records)."""
    return run(spark, settings, ANNA_AND_BOB_APART)


def test_first_run_ids_come_from_the_smallest_record(two_people: dict[str, str]) -> None:
    assert two_people["web:anna"] == first_id("app:a1")
    assert two_people["web:bob"] == first_id("pos:2")


def test_rerun_keeps_every_id_and_records_nothing(
    spark: SparkSession, settings: Settings, two_people: dict[str, str]
) -> None:
    again = run(spark, settings, {"x": ["pos:2", "web:bob"], "y": ["pos:1", "app:a1", "web:anna"]})
    assert again == two_people
    assert events(spark, settings) == set()


def test_a_new_record_joins_the_existing_id_even_when_it_sorts_first(
    spark: SparkSession, settings: Settings, two_people: dict[str, str]
) -> None:
    after = run(
        spark,
        settings,
        {"a": ["web:anna", "pos:1", "app:a1", "app:a0"], "b": ["web:bob", "pos:2"], "n": ["x:n"]},
    )
    assert after["app:a0"] == after["web:anna"] == two_people["web:anna"]
    assert after["x:n"] == first_id("x:n")
    assert events(spark, settings) == set()


def test_merge_keeps_the_id_with_most_records_and_retires_the_other(
    spark: SparkSession, settings: Settings, two_people: dict[str, str]
) -> None:
    anna, bob = two_people["web:anna"], two_people["web:bob"]
    merged = run(spark, settings, {"ab": ["web:anna", "pos:1", "app:a1", "web:bob", "pos:2"]})
    assert set(merged.values()) == {anna}
    assert events(spark, settings) == {("merge", bob, anna, 2)}
    assert retired(spark, settings) == {bob: anna}


def test_split_leaves_the_id_with_the_larger_part_and_records_where_the_rest_went(
    spark: SparkSession, settings: Settings, two_people: dict[str, str]
) -> None:
    anna = two_people["web:anna"]
    after = run(
        spark, settings, {"a": ["web:anna", "pos:1"], "a2": ["app:a1"], "b": ["web:bob", "pos:2"]}
    )
    assert after["web:anna"] == after["pos:1"] == anna
    split_off = after["app:a1"]
    assert split_off not in (anna, two_people["web:bob"])
    assert events(spark, settings) == {("split", anna, split_off, 1)}
    assert retired(spark, settings) == {}  # nobody was retired


def test_a_retired_id_is_followed_through_a_chain_of_merges(
    spark: SparkSession, settings: Settings, two_people: dict[str, str]
) -> None:
    """Bob merges into Anna; later Anna's five records merge into Carl's six."""
    anna, bob = two_people["web:anna"], two_people["web:bob"]
    annas = ["web:anna", "pos:1", "app:a1"]
    carls = [f"c:{i}" for i in range(6)]
    run(spark, settings, {**ANNA_AND_BOB_APART, "c": carls})
    carl = first_id("c:0")
    run(spark, settings, {"ab": [*annas, "web:bob", "pos:2"], "c": carls})
    final = run(spark, settings, {"abc": [*annas, "web:bob", "pos:2", *carls]})
    assert set(final.values()) == {carl}
    assert retired(spark, settings) == {bob: carl, anna: carl}


def test_a_split_off_part_never_gets_an_id_that_was_issued_before(
    spark: SparkSession, settings: Settings, two_people: dict[str, str]
) -> None:
    """app:a1 gave Anna her id; split off alone it would derive the same id again."""
    anna = two_people["web:anna"]
    assert anna == first_id("app:a1")
    after = run(
        spark, settings, {"a": ["web:anna", "pos:1"], "a1": ["app:a1"], "b": ["web:bob", "pos:2"]}
    )
    assert after["web:anna"] == anna
    assert after["app:a1"] != anna
    assert len(set(after.values())) == 3


def test_a_retried_run_does_not_record_its_events_twice(
    spark: SparkSession, settings: Settings, two_people: dict[str, str]
) -> None:
    """A crash after the history was written and before the xref: the retry sees the same
    previous xref and inserts nothing new."""
    everyone = [r for records in ANNA_AND_BOB_APART.values() for r in records]
    frame = clusters_frame(spark, {"ab": everyone})
    previous = previous_ids(spark, settings)
    for _attempt in range(2):
        _, moves = assign_ids(frame, previous)
        record_history(
            spark, settings, history_events(moves, previous, datetime(2026, 11, 24), "m")
        )
    assert history(spark, settings).count() == 1
