"""Resolve a micro-batch's records: the known ones keep their customers, new ones are matched.

The micro-batch path (``jobs.microbatch``) calls :func:`resolve_increment` once per
micro-batch. It returns the customers the micro-batch touched and their gold.identity_xref
and gold.customer_profile rows, computed but not stored: the micro-batch curates and serves
them first and stores them with the curated rows after (``jobs.microbatch`` says why).

- Records already in gold.identity_xref keep their customer id (a changed record that would
  now belong elsewhere is the nightly run's to move); the customers owning the records the
  micro-batch changed or gave activity to are touched.
- Each new record gets a customer id with the saved model, never retrained here; the customers
  the new records joined or started are touched too.

Each new record is scored:

- against the resolved records as gold.identity_features holds them (the batch run writes
  every record's linkage features there; increments add theirs), with Splink's incremental
  primitives (``predict_between``, the same prediction blocking rules, so the deterministic
  keys — same email, same phone — bring the same candidates as in the batch run; term
  frequencies come from the resolved records), and
- against the other new records of the micro-batch (the pairs ``predict_within`` gives,
  scored in the same Splink call; :func:`_score_new_records`).

Pairs at or above the match threshold are clustered as the batch run clusters them: the
over-merge guard of :mod:`identity.cluster` applies, with every resolved customer a group of
its own records. A new group linked to no customer gets a new id by the batch rule (the hash
of its smallest record id, salted if that id was ever issued); a group linked to one customer
joins it. A group linked to several customers (a new record that bridges two people's records)
is not a merge the increment may decide: it joins the customer with the most records, the id
that would survive the merge, and the next batch run (``omnicdp identity resolve``) performs
the merge and records it in gold.customer_id_history. The count of such records is reported
as ``undecided``.

A new record's features are computed with the resolved records that share its email, phone
or full name, so the counts some features take over other records (placeholder emails,
namesakes, household phones) are the batch run's. Resolved records keep the features the
batch run gave them until the next batch run.

Writes, each idempotent, so a micro-batch replayed after a crash converges on the same rows:
while matching, the new records' features are upserted into gold.identity_features and the
new scored pairs are inserted into gold.identity_links (keyed by the pair); a replayed
micro-batch whose new records are not in the xref yet matches them again to the same ids. The
touched customers' xref rows (the new records with the increment's ``resolved_at``) and golden
records (with the model version) are returned for the caller to store. One pass over the known
and the new records together gives the customer ids and golden records the batch run's rules
give, timestamps aside.

Only the micro-batch's records, their candidate pairs and the records of the customers they
link to reach the driver (for the guard's union-find), never a whole table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from operator import and_, or_
from typing import Any, NamedTuple

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from identity.artifact import SavedModel, load_model
from identity.cluster import classify_links, guarded_components
from identity.engines import LinkerSession, open_linker
from identity.features import build_features, contact_keys
from identity.model import ARRAY_BLOCKING_COLUMNS, PREDICTION_BLOCKING_KEYS
from identity.predict import LINK_MIN_PROBABILITY, links_table
from identity.profile import profile_table
from identity.stable_ids import new_id, previous_ids
from identity.survivorship import load_survivorship_rules
from jobs.lakehouse.delta import (
    collect_customer_ids,
    customer_id_frame,
    read_table,
    table_exists,
    upsert_rows,
)
from jobs.lakehouse.spark_schema import conform
from schemas.catalog import (
    GOLD_CUSTOMER_PROFILE,
    GOLD_IDENTITY_FEATURES,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
    Table,
)
from schemas.settings import Settings
from schemas.tables import IDENTITY_XREF

# The keys whose sharers a new record's features count over (``_new_features``): contacts,
# then the name.
_CONTACT_KEYS: tuple[tuple[str, ...], ...] = (("email",), ("phone",), ("name_concat",))


class NoModelError(RuntimeError):
    """Incremental resolution needs a model and a first batch resolution to match against."""


class _Assigned(NamedTuple):
    """A new record's customer: an existing one it joined (``undecided`` when it links several;
    the next batch run merges them) or a new one."""

    record_id: str
    source: str
    customer_id: str
    joined: bool
    undecided: bool


@dataclass(frozen=True)
class IdentityIncrement:
    """What one increment did (counts only, no PII), the customers it touched and their
    identity rows, computed and not stored yet."""

    # Sorted: the owners of the micro-batch's known records and the customers its new records
    # joined or started.
    customer_ids: list[str]
    # Their gold.customer_profile and gold.identity_xref rows, computed, to be stored in this
    # order after any other table (jobs.microbatch).
    rows: dict[Table, DataFrame]
    new_records: int
    joined: int  # new records that joined an existing customer
    new_customers: int
    undecided: int  # new records linked to several customers: merged by the next batch run


def resolve_increment(
    spark: SparkSession, settings: Settings, affected: DataFrame, record_ids: DataFrame
) -> IdentityIncrement:
    """The customers of a micro-batch's records and their identity rows (module doc).

    ``affected``: the records the micro-batch changed or gave activity to; their owners in
    gold.identity_xref keep them (a changed record that would now belong elsewhere is the
    nightly run's to move). ``record_ids``: every record of the micro-batch; those the xref
    does not hold are new and get a customer id.
    """
    model = _saved_model(spark, settings)
    stored = read_table(spark, settings, GOLD_IDENTITY_XREF)
    xref = stored.select("record_id", "customer_id")
    known = collect_customer_ids(xref.join(affected, "record_id", "left_semi"))
    new = record_ids.join(xref, "record_id", "left_anti").distinct().localCheckpoint()
    resolved_at = _now()
    assigned = [] if new.isEmpty() else _assign(spark, settings, model, new, xref, resolved_at)
    counts = _counts(assigned)
    touched = sorted(set(known) | {a.customer_id for a in assigned})
    if not touched:  # anonymous events only
        return IdentityIncrement(customer_ids=[], rows={}, **counts)
    xref_rows = _xref_rows(spark, stored, assigned, touched, resolved_at)
    profiles = _profiles(spark, settings, xref_rows, model, resolved_at)
    rows = {GOLD_CUSTOMER_PROFILE: profiles, GOLD_IDENTITY_XREF: xref_rows}
    return IdentityIncrement(customer_ids=touched, rows=rows, **counts)


def _now() -> datetime:
    """The increment's ``resolved_at``: UTC, to the second, as the batch run stamps its rows."""
    return datetime.now(UTC).replace(microsecond=0)


def _saved_model(spark: SparkSession, settings: Settings) -> SavedModel:
    """The model of the last batch run; an increment never trains one."""
    for table in (GOLD_IDENTITY_XREF, GOLD_IDENTITY_FEATURES):
        if not table_exists(spark, settings, table):
            raise NoModelError(
                f"{table.qualified_name} does not exist: run `omnicdp identity resolve` once "
                "before resolving increments"
            )
    model = load_model(settings.resolved_model_path)
    if model is None or not model.is_current_spec:
        raise NoModelError(
            f"no current identity model at {settings.resolved_model_path}: run `omnicdp "
            "identity resolve` (it trains one) before resolving increments"
        )
    return model


def _assign(
    spark: SparkSession,
    settings: Settings,
    model: SavedModel,
    new: DataFrame,
    xref: DataFrame,
    resolved_at: datetime,
) -> list[_Assigned]:
    """The customer of each new record (at least one), on the driver: a micro-batch's worth."""
    # Holds the resolved records (batch runs write them all, increments add theirs, erasure
    # deletes them), and a scan needs no materializing for Splink. The new records are left
    # out: a replayed micro-batch may have stored their features before it was killed.
    resolved = read_table(spark, settings, GOLD_IDENTITY_FEATURES).join(
        F.broadcast(new), "record_id", "left_anti"
    )
    fresh = _new_features(spark, settings, new, resolved)
    with open_linker(spark, settings, resolved, model.splink_settings, False) as session:
        written = session.features
        candidates = _sharing_a_key(written, PREDICTION_BLOCKING_KEYS, fresh).localCheckpoint()
        pairs = _score_new_records(session, candidates, fresh)
        links = _ordered(links_table(pairs, model.model_version, resolved_at)).localCheckpoint()
        # One collect of the micro-batch's new records: hashes for the insert, the guard's
        # attributes for clustering, sources for the xref.
        own = fresh.select(
            "record_id", _hashed(F.col("record_id")).alias("hash"), "phone", "dob", "source"
        )
        rows = own.collect()
        _insert_links(spark, settings, links, sorted(r.hash for r in rows))
        strong = classify_links(links.where(F.col("match_probability") >= settings.match_threshold))
        attributes = {r.record_id: (r.phone, r.dob) for r in rows}
        customers = _cluster(spark, settings, strong, attributes, written, xref)
    upsert_rows(spark, settings, GOLD_IDENTITY_FEATURES, fresh, "record_id")
    source = {r.record_id: r.source for r in rows}
    return [_Assigned(record, source[record], *customer) for record, *customer in customers]


def _new_features(
    spark: SparkSession, settings: Settings, new: DataFrame, resolved: DataFrame
) -> DataFrame:
    """Linkage features of the new records.

    Some features count over other records (an email given under many names is a
    placeholder; how many people carry a name; how many given names come with a phone), so
    the new records are described together with the resolved records that share an email, a
    phone or a full name with them: the counts are the ones a batch run would see.

    The records sharing an email or a phone are projected again from silver, as the batch
    run sees them: telling a placeholder takes every raw value. Namesakes, often a hundred or
    more per name, are counted as gold.identity_features holds them (the batch run's
    projection): projecting them again made this step 10.5-12.3 s for the 450-570 new
    records of a 10,000-event file on the benchmark lakehouse, 8.4-9.5 s without.
    """
    records = read_table(spark, settings, SILVER_CUSTOMER_RECORDS)
    interactions = read_table(spark, settings, SILVER_INTERACTIONS)

    keys = contact_keys(records.join(new, "record_id", "left_semi")).localCheckpoint()
    # One scan of the resolved records; the contacts are then picked from the few found.
    sharers = _sharing_a_key(resolved, _CONTACT_KEYS, keys).localCheckpoint()
    contacts = _sharing_a_key(sharers, _CONTACT_KEYS[:2], keys).select("record_id")
    features = build_features(
        records.join(new.unionByName(contacts).distinct(), "record_id", "left_semi"),
        # Only the new records' features are kept, and case ids are a record's own.
        interactions.join(new, "record_id", "left_semi"),
        others=sharers,  # the namesakes; the contacts among them are projected instead
    )
    return features.join(new, "record_id", "left_semi").localCheckpoint()


def _sharing_a_key(
    frame: DataFrame, keys: Sequence[tuple[str, ...]], records: DataFrame
) -> DataFrame:
    """The rows of ``frame`` that share a key's value with one of ``records``.

    A key's value is its columns' values together, none of them null, or for an array column
    (``identity.model.ARRAY_BLOCKING_COLUMNS``, a key on its own) any one element. ``records``
    are a micro-batch's, so the values' hashes are collected (at most one per record and key,
    or an array's elements) and ``frame`` is scanned once with hash-set filters: a semi join
    per key would scan it once per key. Hashes, not values: the values are emails, phones and
    names, and a plan's literals reach its text (errors, ``explain``, event logs). A hash
    collision only adds a row, which blocking or the counts then compare by value.
    """
    hashes = records.select(*[_hashes_of(key).alias(str(i)) for i, key in enumerate(keys)])
    found = hashes.first()
    shared = [_hash_among(key, found[i]) for i, key in enumerate(keys) if found[i]]
    return frame.where(reduce(or_, shared, F.lit(False)))


def _hashed(value: Column) -> Column:
    """A 64-bit hash of a non-null value; null stays null (``xxhash64`` hashes null too)."""
    return F.when(value.isNotNull(), F.xxhash64(value))


def _key_column(key: tuple[str, ...]) -> Column:
    """A scalar key's value on a row: its one column, or its columns joined (null if one is)."""
    if len(key) == 1:
        return F.col(key[0])
    joined = F.concat_ws("\x1f", *[F.col(c).cast("string") for c in key])
    return F.when(reduce(and_, [F.col(c).isNotNull() for c in key]), joined)


def _hashes_of(key: tuple[str, ...]) -> Column:
    """The distinct hashes of a key's values over a frame (an aggregate)."""
    if key[0] in ARRAY_BLOCKING_COLUMNS:
        elements = F.array_compact(F.transform(key[0], _hashed))
        return F.array_distinct(F.flatten(F.collect_list(elements)))
    return F.collect_set(_hashed(_key_column(key)))


def _hash_among(key: tuple[str, ...], hashes: list[int]) -> Column:
    """Whether a row's value of ``key`` hashes to one of ``hashes`` (an array: an element)."""
    if key[0] in ARRAY_BLOCKING_COLUMNS:
        return F.exists(key[0], lambda element: _hashed(element).isin(hashes))
    return _hashed(_key_column(key)).isin(hashes)


def _score_new_records(
    session: LinkerSession, candidates: DataFrame, fresh: DataFrame
) -> DataFrame:
    """Scored pairs of each new record (``fresh``) with the resolved records and with the
    other new ones: what ``predict_between`` the resolved and the new records and
    ``predict_within`` the new ones give.

    ``candidates`` are the resolved records a prediction blocking rule can pair with a new
    one (:func:`_sharing_a_key`): blocking them gives the pairs blocking every resolved record
    would, without joining the whole table once per rule. Term frequencies are computed over
    the session's input, every resolved record, as the batch run's are.

    One ``predict_between`` with the new records on both sides scores both kinds of pairs:
    Splink's cost per call is mostly fixed, and two calls took 6.3-6.7 s where one takes
    3.4-3.7 s (50 new records, benchmark lakehouse, warm session). Two new records then meet
    in both orders, and each meets itself; the pair is kept once, smaller id left, as
    ``predict_within`` gives it. The right side is always a new record, so a pair is twice
    when its left one is new too: told by a join with ``fresh``, not by the ids as literals
    (a record id can hold an email).
    """
    linker = session.linker
    for column in linker._settings_obj._term_frequency_columns:  # no public accessor in Splink 5
        linker.table_management.compute_tf_table(column.unquote().name)
    new_records = session.register(fresh, "__omnicdp_new_records")
    resolved_records = session.register(candidates, "__omnicdp_resolved_records")
    scored = linker.inference.predict_between(
        [resolved_records, new_records],
        new_records,
        threshold_match_probability=LINK_MIN_PROBABILITY,
    )
    new_left = fresh.select(F.col("record_id").alias("_new_l"))
    left = F.col("record_id_l")
    twice = (left == F.col("_new_l")) & (left >= F.col("record_id_r"))
    return session.to_spark(scored).join(F.broadcast(new_left), twice, "left_anti")


def _ordered(links: DataFrame) -> DataFrame:
    """Each pair with the smaller record id on the left, as the batch run writes them."""
    swap = F.col("record_id_l") > F.col("record_id_r")
    sided = {"record_id", "source"}
    columns = []
    for name in links.columns:
        stem, _, side = name.rpartition("_")
        if stem in sided and side in ("l", "r"):
            other = f"{stem}_{'r' if side == 'l' else 'l'}"
            columns.append(F.when(swap, F.col(other)).otherwise(F.col(name)).alias(name))
        else:
            columns.append(F.col(name))
    return links.select(*columns)


def _insert_links(
    spark: SparkSession, settings: Settings, links: DataFrame, new_hashes: list[int]
) -> None:
    """Insert pairs gold.identity_links does not have yet.

    Every pair has a new record on one side, so only stored pairs with one can match: saying
    so in the condition lets Delta drop the other stored pairs before it joins. Without it the
    insert sorted every stored pair (2.1-2.4 s for 300 pairs into the 1.76 million of the
    benchmark lakehouse; 0.35-0.72 s with it). The new records are named by their ids'
    hashes (``new_hashes``, :func:`_hashed`): Delta keeps a MERGE's condition in the table's
    history, and a record id can hold an email.
    """
    from delta.tables import DeltaTable

    target = DeltaTable.forPath(spark, GOLD_IDENTITY_LINKS.path(settings))
    hashes = ", ".join(str(h) for h in new_hashes)
    (
        target.alias("t")
        .merge(
            links.alias("s"),
            "t.record_id_l = s.record_id_l AND t.record_id_r = s.record_id_r AND ("
            f"xxhash64(t.record_id_l) IN ({hashes}) OR xxhash64(t.record_id_r) IN ({hashes}))",
        )
        .whenNotMatchedInsertAll()
        .execute()
    )


def _cluster(
    spark: SparkSession,
    settings: Settings,
    strong: DataFrame,
    new: dict[str, tuple[Any, Any]],
    features: DataFrame,
    xref: DataFrame,
) -> list[tuple[str, str, bool, bool]]:
    """Group the new records (``new``: record id -> phone, dob) with the guard, each linked
    customer as one group (module doc); ``_ids_for_groups`` says what comes back."""
    rows = list(strong.toLocalIterator())
    # A join, not the linked ids as literals: a record id can hold an email.
    linked = strong.select(F.col("record_id_l").alias("record_id")).union(
        strong.select(F.col("record_id_r").alias("record_id"))
    )
    owners = (
        xref.join(F.broadcast(linked), "record_id", "left_semi").select("customer_id").distinct()
    )
    members = xref.join(owners, "customer_id", "left_semi").join(
        features.select("record_id", "phone", "dob"), "record_id", "left"
    )
    attributes = dict(new)
    customer_of: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for m in members.toLocalIterator():
        attributes[m.record_id] = (m.phone, m.dob)
        customer_of[m.record_id] = m.customer_id
        sizes[m.customer_id] = sizes.get(m.customer_id, 0) + 1
    groups = guarded_components(_with_membership(rows, customer_of), attributes)
    return _ids_for_groups(spark, settings, groups, set(new), customer_of, sizes)


@dataclass(frozen=True)
class _Link:
    record_id_l: str
    record_id_r: str
    match_probability: float
    corroborated: bool


def _with_membership(rows: list[Any], customer_of: dict[str, str]) -> list[Any]:
    """The scored links plus one certain link from each resolved record to the first record of
    its customer, so a customer enters the union-find as the group it already is."""
    first: dict[str, str] = {}
    for record, customer in sorted(customer_of.items()):
        first.setdefault(customer, record)
    membership = [
        _Link(first[customer], record, 1.0, True)
        for record, customer in customer_of.items()
        if record != first[customer]
    ]
    return [*rows, *membership]


def _ids_for_groups(
    spark: SparkSession,
    settings: Settings,
    groups: dict[str, str],
    new_ids: set[str],
    customer_of: dict[str, str],
    sizes: dict[str, int],
) -> list[tuple[str, str, bool, bool]]:
    """``record_id, customer_id, joined, undecided`` for the new records of each group:
    ``joined`` when the group links to a resolved customer (``undecided`` when to several)."""
    customers_in: dict[str, set[str]] = {}
    for record, root in groups.items():
        if record in customer_of:
            customers_in.setdefault(root, set()).add(customer_of[record])
    rows = []
    fresh_groups: dict[str, str] = {}
    for record in sorted(new_ids):
        root = groups.get(record, record)
        linked = customers_in.get(root, set())
        if linked:
            survivor = min(linked, key=lambda c: (-sizes[c], c))
            rows.append((record, survivor, True, len(linked) > 1))
        else:
            fresh_groups.setdefault(root, record)  # records are sorted: the group's smallest
            rows.append((record, None, False, False))
    keys = _new_customer_ids(spark, settings, sorted(set(fresh_groups.values())))
    return [
        (record, customer or keys[fresh_groups[groups.get(record, record)]], joined, undecided)
        for record, customer, joined, undecided in rows
    ]


def _new_customer_ids(spark: SparkSession, settings: Settings, keys: list[str]) -> dict[str, str]:
    """A new id per group key (its smallest record id), by the batch run's rule."""
    if not keys:
        return {}
    previous = previous_ids(spark, settings)
    candidates = spark.createDataFrame([(k,) for k in keys], "cluster_key string")
    plain = candidates.withColumn("customer_id", new_id(F.col("cluster_key")))
    taken = plain.join(previous.issued, "customer_id", "left_semi").select("cluster_key")
    salted = F.concat_ws("#", "cluster_key", F.lit(str(previous.version)))
    chosen = plain.join(taken.withColumn("_taken", F.lit(True)), "cluster_key", "left").select(
        "cluster_key",
        F.when(F.col("_taken").isNull(), F.col("customer_id"))
        .otherwise(new_id(salted))
        .alias("customer_id"),
    )
    return {r.cluster_key: r.customer_id for r in chosen.collect()}  # one row per new group


def _xref_rows(
    spark: SparkSession,
    stored: DataFrame,
    assigned: list[_Assigned],
    touched: list[str],
    resolved_at: datetime,
) -> DataFrame:
    """The touched customers' xref rows (``stored`` is the xref before this increment): their
    records, the new ones (``assigned``, none of them in ``stored``) included, with the
    cluster size they now have; computed."""
    kept = stored.join(customer_id_frame(spark, touched), "customer_id", "left_semi").select(
        "record_id", "source", "customer_id", "resolved_at"
    )
    added = spark.createDataFrame(
        [(a.record_id, a.source, a.customer_id) for a in assigned],
        "record_id string, source string, customer_id string",
    ).withColumn("resolved_at", F.lit(resolved_at).cast("timestamp"))
    rows = kept.unionByName(added)
    sized = rows.withColumn(
        "cluster_size", F.count(F.lit(1)).over(Window.partitionBy("customer_id")).cast("long")
    )
    return conform(sized, IDENTITY_XREF).localCheckpoint()


def _profiles(
    spark: SparkSession,
    settings: Settings,
    xref: DataFrame,
    model: SavedModel,
    resolved_at: datetime,
) -> DataFrame:
    """The golden records of the customers of ``xref`` (their xref rows), by the batch run's
    survivorship; computed."""
    survivorship = load_survivorship_rules(settings.survivorship_rules)
    records = read_table(spark, settings, SILVER_CUSTOMER_RECORDS).join(
        xref.select("record_id"), "record_id", "left_semi"
    )
    profiles = profile_table(records, xref, model.model_version, resolved_at, survivorship)
    return profiles.localCheckpoint()


def _counts(assigned: list[_Assigned]) -> dict[str, int]:
    """New records, how many joined an existing customer or were undecided, new customers."""
    return {
        "new_records": len(assigned),
        "joined": sum(a.joined for a in assigned),
        "new_customers": len({a.customer_id for a in assigned if not a.joined}),
        "undecided": sum(a.undecided for a in assigned),
    }
