"""The over-merge guard at clustering: a name alone must not chain two people together.

The scenario is the one the simulator produces and the guard was built for: two people who
share a rare name, each with a group of records held together by a phone or an email, and a
POS or social record that agrees with both on the name and nothing else. The clusters are
given as Splink's connected components would give them (one component); the guard runs on real
Spark through the same function ``cluster_records`` calls.
"""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from identity.cluster import classify_links, dobs_compatible, guard_clusters, guarded_components
from schemas.tables import CUSTOMER_RECORDS
from tests.builders import clusters_frame, frame, record_of

# Two Patricia Smiths: A (call center + POS, one phone) and B (web + app, other phone and a dob),
# and a social profile that agrees with both on the name only.
RECORDS = [
    record_of("call_center:a1", phone="+16172428997"),
    record_of("pos:a2", phone="+16172428997"),
    record_of("web:b1", phone="+17186502089", dob=date(1980, 3, 14)),
    record_of("app:b2", phone="+17186502089", dob=date(1980, 3, 14)),
    record_of("social:s1"),
]
CONTACTS = {r["record_id"]: (r["phone"], r["dob"]) for r in RECORDS}  # what the guard compares
# (left, right, probability, mw_name, mw_phone, mw_dob)
LINKS = [
    ("call_center:a1", "pos:a2", 0.999, 8.0, 12.0, None),
    ("app:b2", "web:b1", 0.9999, 8.0, 12.0, 9.0),
    ("pos:a2", "social:s1", 0.948, 8.0, None, None),
    ("social:s1", "web:b1", 0.948, 8.0, None, None),
    ("call_center:a1", "social:s1", 0.948, 8.0, None, None),
]


def link(left: str, right: str, probability: float, corroborated: bool) -> SimpleNamespace:
    return SimpleNamespace(
        record_id_l=left,
        record_id_r=right,
        match_probability=probability,
        corroborated=corroborated,
    )


def test_name_only_link_does_not_join_groups_with_different_phones() -> None:
    links = [link(a, b, p, phone is not None) for a, b, p, _, phone, _ in LINKS]
    groups = guarded_components(links, CONTACTS)

    assert groups["call_center:a1"] == groups["pos:a2"]
    assert groups["web:b1"] == groups["app:b2"]
    assert groups["pos:a2"] != groups["web:b1"]
    # The social profile goes with the group its name-only links reach first, in a fixed order
    # (probability, then record ids): ("pos:a2", "social:s1") sorts before ("social:s1", ...).
    assert groups["social:s1"] == groups["pos:a2"]
    # Cluster ids are the group's smallest record id: independent of the order of the links.
    reversed_groups = guarded_components(list(reversed(links)), CONTACTS)
    assert reversed_groups == groups
    assert groups["web:b1"] == "app:b2"


def test_name_only_link_joins_a_group_without_contact_details_of_its_own() -> None:
    records = {"pos:a1": ("+16172428997", None), "social:s1": (None, None)}
    groups = guarded_components([link("pos:a1", "social:s1", 0.948, False)], records)
    assert groups["pos:a1"] == groups["social:s1"]


def test_incompatible_dates_of_birth_refuse_a_name_only_link_but_typos_do_not() -> None:
    records = {
        "web:a": (None, date(1980, 3, 14)),
        "app:b": (None, date(1980, 3, 15)),  # one digit off: the same person typing
        "app:c": (None, date(1991, 7, 2)),
    }
    links = [link("web:a", "app:b", 0.95, False), link("app:b", "app:c", 0.95, False)]
    groups = guarded_components(links, records)
    assert groups["web:a"] == groups["app:b"] != groups["app:c"]


def test_corroborated_links_are_never_refused() -> None:
    records = {"web:a": ("+16172428997", None), "pos:b": ("+17186502089", None)}
    groups = guarded_components([link("pos:b", "web:a", 0.99, True)], records)
    assert groups["web:a"] == groups["pos:b"]


def test_dob_compatibility_follows_the_model_levels() -> None:
    assert dobs_compatible(date(1980, 3, 14), date(1980, 3, 14))
    assert dobs_compatible(date(1980, 3, 14), date(1980, 8, 14))  # one digit
    assert dobs_compatible(date(1980, 3, 4), date(1980, 4, 3))  # day and month swapped
    assert not dobs_compatible(date(1980, 3, 14), date(1981, 4, 14))
    assert not dobs_compatible(date(1980, 3, 14), date(1991, 7, 2))


def test_guard_splits_the_component_on_spark(spark: SparkSession) -> None:
    records = frame(spark, RECORDS, CUSTOMER_RECORDS)
    pairs = spark.createDataFrame(
        LINKS,
        "record_id_l string, record_id_r string, match_probability double,"
        " mw_name double, mw_phone double, mw_dob double",
    ).withColumn("mw_tf_adj_name", F.lit(1.5))  # the name's own adjustment corroborates nothing
    component = clusters_frame(
        spark, {"call_center:a1": list(CONTACTS), "web:lonely": ["web:lonely"]}
    )

    clusters = {
        r.record_id: r.cluster_id
        for r in guard_clusters(component, classify_links(pairs), records).collect()
    }

    assert len(clusters) == 6  # every record, singletons included, exactly once
    assert clusters["web:lonely"] == "web:lonely"
    assert clusters["call_center:a1"] == clusters["pos:a2"] == clusters["social:s1"]
    assert clusters["web:b1"] == clusters["app:b2"] == "app:b2"
    assert clusters["pos:a2"] != clusters["web:b1"]


def test_components_without_conflicting_details_keep_splinks_cluster_id(
    spark: SparkSession,
) -> None:
    records = frame(
        spark, [record_of("pos:a", phone="+16172428997"), record_of("social:s")], CUSTOMER_RECORDS
    )
    pairs = spark.createDataFrame(
        [("pos:a", "social:s", 0.948, 8.0, None)],
        "record_id_l string, record_id_r string, match_probability double,"
        " mw_name double, mw_phone double",
    )
    component = clusters_frame(spark, {"splink-7": ["pos:a", "social:s"]})
    rows = guard_clusters(component, classify_links(pairs), records).collect()
    assert {r.cluster_id for r in rows} == {"splink-7"}
