"""Group linked records into customers, without letting a name alone chain two people together.

Clusters start as the connected components of the pairs at or above the match threshold
(Splink's clustering); a record linked to nothing is a cluster of one. Which ``customer_id`` a
cluster carries is decided against the previous run by :mod:`identity.stable_ids`.

Connected components are transitive: one link is enough to join two groups. That is what
over-merges namesakes. A POS record typed "patricia smith" with one phone and a social profile
"patricia smith" with an email agree on a rare name and nothing else; the link is right more
often than not, but when the POS record's phone already belongs to one Patricia Smith's group
and the social profile to another's, the link joins two people. So links are of two kinds:

- **corroborated**: some comparison other than the name (date of birth, email, phone, address,
  case) has a positive match weight. These are clustered as Splink clusters them.
- **name only**: the name is the only positive evidence. After the corroborated links are in,
  these are added strongest first, and one is refused when the two groups it would join
  **conflict**: each has a phone and they share none, or they hold dates of birth that are not
  the same date typed differently (one digit off, day and month swapped, the model's own dob
  levels). A name-only link into a group with no phone or date of birth of its own is kept.

On the 2,000-person simulation this refuses about 30 of 350 name-only links and lifts pairwise
precision from 0.976 to 0.996 at a recall cost of 0.006. Only components that contain a
name-only link and more than one phone or date of birth can change, so only those are
re-clustered, each on one executor (a component is one customer's records, small by the gold
gate's cluster-size bound); the rest keep Splink's cluster id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from splink.internals.splink_dataframe import SplinkDataFrame

from identity.engines import LinkerSession
from identity.model import NAME_COMPARISON

GUARDED_SCHEMA = "member string, guarded_cluster_id string"


def cluster_records(
    session: LinkerSession, predictions: SplinkDataFrame, match_threshold: float
) -> DataFrame:
    """``record_id, source, cluster_id`` for every record of the session, singletons included.

    The session's features give each record's ``phone`` and ``dob``, which decide whether a
    name-only link would join two conflicting groups (module doc).
    """
    components = session.linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=match_threshold
    )
    pairs = session.to_spark(predictions).where(F.col("match_probability") >= match_threshold)
    guarded = guard_clusters(
        session.to_spark(components).select("record_id", "source", "cluster_id"),
        classify_links(pairs),
        session.features,
    )
    # Computed once: stable ids derive both the assignment and the merge/split moves from it.
    return guarded.localCheckpoint()


def classify_links(pairs: DataFrame) -> DataFrame:
    """``record_id_l, record_id_r, match_probability, corroborated`` for scored pairs.

    Corroborated means a comparison other than the name has a positive match weight
    (``mw_<comparison>``; term-frequency adjustments are the name's own).
    """
    evidence = [
        c
        for c in pairs.columns
        if c.startswith("mw_") and not c.startswith("mw_tf_adj_") and c != f"mw_{NAME_COMPARISON}"
    ]
    corroborated = F.greatest(*[F.coalesce(F.col(c), F.lit(0.0)) for c in evidence], F.lit(0.0))
    return pairs.select(
        "record_id_l",
        "record_id_r",
        "match_probability",
        (corroborated > 0).alias("corroborated"),
    )


def guard_clusters(clusters: DataFrame, links: DataFrame, records: DataFrame) -> DataFrame:
    """``clusters`` with the components that a name-only link over-merges split (module doc).

    ``clusters``: ``record_id, source, cluster_id``; ``links``: the pairs at or above the
    threshold as :func:`classify_links` gives them; ``records``: ``record_id, phone, dob``.
    """
    attributes = _membership(clusters, "member").join(
        records.select(F.col("record_id").alias("member"), "phone", "dob"), "member", "left"
    )
    links_in = links.join(_membership(clusters, "record_id_l"), "record_id_l")
    suspects = _suspect_components(attributes, links_in)
    guarded = (
        links_in.join(suspects, "component", "left_semi")
        .groupBy("component")
        .cogroup(attributes.join(suspects, "component", "left_semi").groupBy("component"))
        .applyInPandas(_guarded_pandas, schema=GUARDED_SCHEMA)
    )
    return clusters.join(guarded, clusters["record_id"] == guarded["member"], "left").select(
        clusters["record_id"],
        clusters["source"],
        F.coalesce(guarded["guarded_cluster_id"], clusters["cluster_id"]).alias("cluster_id"),
    )


def _membership(clusters: DataFrame, record_column: str) -> DataFrame:
    """``record_column, component`` from ``clusters``, as fresh columns: the pieces built from
    ``clusters`` meet again in a cogroup and a join, which Spark rejects as ambiguous
    self-joins when they share column identities."""
    return clusters.select(
        F.col("record_id").alias(record_column), F.col("cluster_id").alias("component")
    )


def _suspect_components(attributes: DataFrame, links_in: DataFrame) -> DataFrame:
    """Cluster ids whose components have a name-only link and more than one phone or dob:
    the only ones the guard can change."""
    with_name_only = links_in.where(~F.col("corroborated")).select("component").distinct()
    varied = (
        attributes.groupBy("component")
        .agg(
            F.countDistinct("phone").alias("phones"),
            F.countDistinct("dob").alias("dobs"),
        )
        .where((F.col("phones") > 1) | (F.col("dobs") > 1))
        .select("component")
    )
    return with_name_only.join(varied, "component")


def _guarded_pandas(links: pd.DataFrame, records: pd.DataFrame) -> pd.DataFrame:
    """Spark's cogroup adapter for :func:`guarded_components` (one component per call)."""
    assignment = guarded_components(
        links.itertuples(index=False),
        {r.member: (r.phone, r.dob) for r in records.itertuples(index=False)},
    )
    return pd.DataFrame(
        {"member": list(assignment), "guarded_cluster_id": list(assignment.values())},
        columns=["member", "guarded_cluster_id"],
    )


class _Groups:
    """Union-find over record ids that keeps each group's phones and dates of birth."""

    def __init__(self, attributes: dict[str, tuple[str | None, date | None]]) -> None:
        self.parent = {r: r for r in attributes}
        self.phones = {r: {p} if _present(p) else set() for r, (p, _) in attributes.items()}
        self.dobs = {r: {d} if _present(d) else set() for r, (_, d) in attributes.items()}

    def find(self, record: str) -> str:
        while self.parent[record] != record:
            self.parent[record] = self.parent[self.parent[record]]
            record = self.parent[record]
        return record

    def conflict(self, a: str, b: str) -> bool:
        """Both groups have phones and share none, or hold incompatible dates of birth."""
        pa, pb = self.phones[a], self.phones[b]
        if pa and pb and not pa & pb:
            return True
        return any(not dobs_compatible(x, y) for x in self.dobs[a] for y in self.dobs[b])

    def union(self, a: str, b: str) -> None:
        """Join two roots; the smaller record id becomes the root so ids are deterministic."""
        root, child = sorted((a, b))
        self.parent[child] = root
        self.phones[root] |= self.phones.pop(child)
        self.dobs[root] |= self.dobs.pop(child)


def _present(value: object) -> bool:
    return value is not None and not pd.isna(value)


def guarded_components(
    links: Iterable[Any], attributes: dict[str, tuple[str | None, date | None]]
) -> dict[str, str]:
    """record id -> cluster id (the group's smallest record id) for one component.

    ``links`` have ``record_id_l, record_id_r, match_probability, corroborated``;
    ``attributes`` map every record of the component to its (phone, dob). Corroborated links
    join unconditionally; name-only links follow strongest first (ties by record ids, so the
    result does not depend on row order) and are refused on a conflict.
    """
    groups = _Groups(attributes)
    ordered = sorted(
        links,
        key=lambda x: (not x.corroborated, -x.match_probability, x.record_id_l, x.record_id_r),
    )
    for link in ordered:
        a, b = groups.find(link.record_id_l), groups.find(link.record_id_r)
        if a != b and (link.corroborated or not groups.conflict(a, b)):
            groups.union(a, b)
    return {record: groups.find(record) for record in attributes}


def dobs_compatible(a: date, b: date) -> bool:
    """The same date of birth, or one typed differently: one digit off or day and month
    swapped (the model's dob levels)."""
    if a == b:
        return True
    sa, sb = a.strftime("%Y%m%d"), b.strftime("%Y%m%d")
    if sum(x != y for x, y in zip(sa, sb, strict=True)) <= 1:
        return True
    return a.year == b.year and a.month == b.day and a.day == b.month
