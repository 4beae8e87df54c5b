"""Linkage features: the columns the Splink model compares, derived from silver customer records.

Silver keeps what each source told us; linkage needs every record described the same way. Web
and app records have form fields for first and last name; POS, call center and social records
only a name string, which :mod:`identity.names` splits into given and family name whatever the
order. Derived keys (phone tail, sorted name) exist so blocking rules can be plain equi-joins,
which Spark executes as hash joins instead of cartesian products.
"""

from __future__ import annotations

import pandas as pd
import phonenumbers
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType

from identity.names import (
    formal_names,
    romanization_key,
    split_full_name,
    standard_family,
    structured_names,
)
from jobs.lakehouse.delta import read_table
from schemas.catalog import SILVER_CUSTOMER_RECORDS, SILVER_INTERACTIONS
from schemas.imported import IMPORTED_SOURCE
from schemas.settings import Settings

# Sources whose first/last name columns come from separate form fields: web and app forms, and
# a user's own customer table (identity.byod), whose first and last name columns are too.
_FORM_SOURCES = ("web", "app", IMPORTED_SOURCE)

# An email or phone given under more distinct names than this is a placeholder ("test@test.com",
# the store's own number typed by a cashier), not a person's identifier: one person's records
# carry a handful of spellings of their name, a household a few names.
PLACEHOLDER_NAME_LIMIT = 6

# Shortest email username or social handle (in letters) taken as a possible spelling of a name.
ALIAS_MIN_LETTERS = 5

# How far contacts are followed to tell whether records with one name are one person: enough
# for a person whose records share an email with some and a phone with others.
NAME_PEOPLE_HOPS = 3


def _blank_to_null(col: Column) -> Column:
    """Empty strings carry no evidence; Splink's null levels only recognise real nulls."""
    trimmed = F.trim(col)
    return F.when(trimmed != "", trimmed)


def _maybe_korean() -> Column:
    """A record from Korea, or of unknown country: Korean name rules may apply to it."""
    return F.coalesce(F.col("country") == "KR", F.lit(True))


def _names() -> tuple[Column, Column]:
    """(given, family) per record: form fields where the source has them, else the full name."""
    maybe_korean = _maybe_korean()
    form_given, form_family = structured_names(
        F.col("first_name"), F.col("last_name"), maybe_korean
    )
    split_given, split_family = split_full_name(F.col("full_name"), maybe_korean)
    has_form = F.col("source").isin(*_FORM_SOURCES) & (
        F.col("first_name").isNotNull() | F.col("last_name").isNotNull()
    )
    given = _blank_to_null(F.when(has_form, form_given).otherwise(split_given))
    family = _blank_to_null(F.when(has_form, form_family).otherwise(split_family))
    return given, standard_family(family)


def _name_key(first: Column, last: Column) -> Column:
    """Given and family name sorted alphabetically: equal for "kim minji" and "minji kim"."""
    parts = F.array_sort(F.array_compact(F.array(first, last)))
    return F.when(F.size(parts) == 2, F.array_join(parts, " "))


def _digits_tail(col: Column, n: int) -> Column:
    """Last ``n`` digits of a phone number, robust to a wrong or missing country prefix."""
    digits = F.regexp_replace(col, r"[^0-9]", "")
    return F.when(F.length(digits) >= n, F.substring(digits, -n, n))


def _digit_anagram(col: Column) -> Column:
    """A phone's digits in sorted order: equal for numbers that differ by swapped digits.

    Two neighbouring digits swapped is the commonest phone typo; blocking on this key brings
    such numbers together without comparing every pair of phones.
    """
    return F.array_join(F.array_sort(F.split(F.regexp_replace(col, r"[^0-9]", ""), "")), "")


def _without_placeholders(features: DataFrame, column: str) -> DataFrame:
    """Null ``column`` where its value is shared by more than PLACEHOLDER_NAME_LIMIT names."""
    placeholders = (
        features.where(F.col(column).isNotNull())
        .groupBy(column)
        .agg(F.countDistinct("name_concat").alias("_names"))
        .where(F.col("_names") > PLACEHOLDER_NAME_LIMIT)
        .select(column, F.lit(True).alias("_placeholder"))
    )
    return (
        features.join(F.broadcast(placeholders), column, "left")
        .withColumn(column, F.when(F.col("_placeholder").isNull(), F.col(column)))
        .drop("_placeholder")
    )


def _letters(col: Column) -> Column:
    return F.regexp_replace(F.lower(col), "[^a-z]", "")


def _aliases() -> Column:
    """Letters of the email username and social handle ("jongmin_choi03" -> "jongminchoi").

    People build usernames and handles from their names, so an alias that spells another
    record's name links records that share no identifier at all. A leading "the" of a handle
    ("theandrewprice") is dropped as a variant; aliases shorter than ALIAS_MIN_LETTERS are
    too generic to spell anyone's name.
    """
    handle = _letters(F.col("social_handle"))
    candidates = F.array(
        _letters(F.col("email_user")), handle, F.regexp_replace(handle, "^the", "")
    )
    return F.array_distinct(
        F.filter(F.array_compact(candidates), lambda a: F.length(a) >= ALIAS_MIN_LETTERS)
    )


def _name_spellings(first: Column, last: Column) -> Column:
    """A name as usernames spell it: "minjikim" and "kimminji" for Minji Kim.

    Not for social display names, which are as often words ("daily life") as names: another
    profile's handle "daily_life" would spell them.
    """
    f, la = _letters(first), _letters(last)
    return F.when((F.length(f) > 0) & (F.length(la) > 0), F.array(F.concat(f, la), F.concat(la, f)))


def _case_ids(interactions: DataFrame) -> DataFrame:
    """``record_id, case_ids``: the support cases each record's interactions belong to.

    One complaint can start as a social DM, continue in the app chat and end on the phone
    under one case id; the case id then ties those channels' records to one person.
    """
    return (
        interactions.where(F.col("record_id").isNotNull() & F.col("case_id").isNotNull())
        .groupBy("record_id")
        .agg(F.array_sort(F.collect_set("case_id")).alias("case_ids"))
    )


def _name_holders(features: DataFrame) -> DataFrame:
    """``name_concat, name_people``: how many known people seem to carry each full name.

    Counting records would count one person with five records as five namesakes and make
    every name look common. Records with the same full name are taken as one person when they
    are connected through a shared email, phone or date of birth (followed NAME_PEOPLE_HOPS
    hops deep). Only groups with an email or a date of birth count: those are people with a
    web or app profile, while a group with only a phone (a till or a call) may well be one of
    them under another number. A name only such records carry counts zero people.
    """
    keyed = features.where(F.col("name_concat").isNotNull()).select(
        "name_concat",
        "record_id",
        (F.col("email").isNotNull() | F.col("dob").isNotNull()).alias("known"),
        F.explode(
            F.array_compact(
                F.array(
                    F.concat(F.lit("e:"), "email"),
                    F.concat(F.lit("p:"), "phone"),
                    F.concat(F.lit("d:"), F.col("dob").cast("string")),
                )
            )
        ).alias("key"),
    )
    keys = keyed.select("name_concat", "record_id", "key")
    labels = keys.select("name_concat", "record_id", F.col("record_id").alias("label")).distinct()
    for _ in range(NAME_PEOPLE_HOPS):
        per_key = (
            keys.join(labels, ["name_concat", "record_id"])
            .groupBy("name_concat", "key")
            .agg(F.min("label").alias("label"))
        )
        labels = (
            keys.join(per_key, ["name_concat", "key"])
            .groupBy("name_concat", "record_id")
            .agg(F.min("label").alias("label"))
        )
    groups = (
        labels.join(keyed.select("record_id", "known").distinct(), "record_id")
        .groupBy("name_concat", "label")
        .agg(F.max("known").alias("known"))
    )
    return groups.groupBy("name_concat").agg(F.sum(F.col("known").cast("int")).alias("name_people"))


def _one_slip_apart(a: Column, b: Column) -> Column:
    """Two spellings of one typed name: the same first letter (people rarely mistype the letter
    they start with) and one letter changed, dropped or doubled, or two letters swapped.

    Stricter than the model's "first names agree" (Jaro-Winkler 0.8): counting a household's
    "mary" and "gary" as one person would let a nameless record on their phone join either.
    """

    def letters(name: Column) -> Column:
        return F.array_sort(F.split(name, ""))

    return (F.substring(a, 1, 1) == F.substring(b, 1, 1)) & (
        (F.levenshtein(a, b, 1) != -1)
        | ((letters(a) == letters(b)) & (F.levenshtein(a, b, 2) != -1))
    )


@F.pandas_udf(BooleanType())
def _fixed_line(phone: pd.Series) -> pd.Series:
    """True for a number its country's plan reserves for fixed lines (an E.164 phone).

    A landline rings in a home, so like an address it is a household's, whoever gave it. Where
    the plan cannot tell (US numbers are "fixed line or mobile") it is not known to be one.
    """

    def fixed(e164: str | None) -> bool:
        if e164 is None:
            return False
        try:
            number = phonenumbers.parse(e164)
        except phonenumbers.NumberParseException:
            return False
        return phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.FIXED_LINE

    return pd.Series([fixed(p) for p in phone], dtype="bool")


def _given_names_known(features: DataFrame) -> DataFrame:
    """``first_name, first_name_known``: given names some non-social record gives.

    A social display name is a person's given name only if people give it elsewhere too;
    "panda", "coffee" or "daily" never are. Only such words are compatible with any given name
    and no evidence in the name comparison (``model.first_names_compatible``).
    """
    return (
        features.where(F.col("first_name").isNotNull() & (F.col("source") != "social"))
        .select("first_name", F.lit(True).alias("first_name_known"))
        .distinct()
    )


def _phone_given_names(features: DataFrame) -> DataFrame:
    """``phone, phone_given_names``: how many different given names records give with a phone.

    One for a person's own phone; more for a household phone or landline given by several
    members. Spellings of one name count once: a nickname and its formal name or two
    romanizations of a Korean name (their ``first_formal`` overlap), and names one typing slip
    apart (:func:`_one_slip_apart`); otherwise one person whose name a cashier and
    an agent wrote differently would look like a household, and the model would refuse the
    phone as evidence between their records. A name counts when no alphabetically smaller
    name on the phone is a spelling of it.
    Social display names are not counted: they are often not names at all. Nor is the one word
    of a record with only one name: a call center agent's "park" may be the family name of the
    "sieun park" who gave the phone, and counting it would make her phone a household's.
    """
    names = (
        features.where(
            F.col("phone").isNotNull()
            & F.col("first_name").isNotNull()
            & F.col("last_name").isNotNull()
            & (F.col("source") != "social")
        )
        .select("phone", "first_name", "first_formal")
        .dropDuplicates(["phone", "first_name"])
    )
    smaller = names.select(
        "phone", F.col("first_name").alias("smaller"), F.col("first_formal").alias("smaller_formal")
    )
    spelled_before = names.join(smaller, "phone").where(
        (F.col("smaller") < F.col("first_name"))
        & (
            _one_slip_apart(F.col("smaller"), F.col("first_name"))
            | F.arrays_overlap("smaller_formal", "first_formal")
        )
    )
    return (
        names.join(
            spelled_before.select("phone", "first_name"), ["phone", "first_name"], "left_anti"
        )
        .groupBy("phone")
        .agg(F.count(F.lit(1)).alias("phone_given_names"))
    )


def contact_keys(records: DataFrame) -> DataFrame:
    """``record_id, email, phone, name_concat`` of silver records, as :func:`build_features`
    derives them before dropping placeholders: enough to find the records that share one."""
    return _projected(records).select("record_id", "email", "phone", "name_concat")


def _projected(records: DataFrame) -> DataFrame:
    """The per-record feature columns: no counts over other records yet."""
    first, last = _names()
    return records.select(
        "record_id",
        "source",
        first.alias("first_name"),
        last.alias("last_name"),
        "dob",
        _blank_to_null(F.lower(F.col("email"))).alias("email"),
        _blank_to_null(F.col("phone")).alias("phone"),
        _blank_to_null(F.lower(F.col("address_line"))).alias("address_line"),
        _blank_to_null(F.upper(F.regexp_replace("postcode", r"\s+", ""))).alias("postcode"),
        _blank_to_null(F.lower(F.col("city"))).alias("city"),
        "social_handle",
        _maybe_korean().alias("maybe_korean"),
    ).withColumns(
        {
            "name_concat": F.when(
                F.col("first_name").isNotNull() & F.col("last_name").isNotNull(),
                F.concat_ws(" ", "first_name", "last_name"),
            ),
            "first_formal": formal_names(
                F.col("first_name"),
                F.when(F.col("maybe_korean"), romanization_key(F.col("first_name"))),
            ),
        }
    )


def build_features(
    records: DataFrame, interactions: DataFrame, others: DataFrame | None = None
) -> DataFrame:
    """Project silver customer records (and their cases) onto the linkage feature columns.

    ``others``: features already built (gold.identity_features rows) of more records that the
    counts over other records also count, for features of a few records that share names with
    many: those need not be projected again. Only ``records`` get features.
    """
    features = _projected(records)
    # Materialized here: the name expressions are large, and the self-joins below (name
    # holders, phone given names) would make Spark analyse and run them once per reference
    # (a minute on 300 records on a busy machine, instead of seconds).
    features = _without_placeholders(
        _without_placeholders(features, "email"), "phone"
    ).localCheckpoint()
    counted = features
    if others is not None:
        shared = [c for c in features.columns if c in others.columns]
        counted = features.unionByName(
            others.join(features, "record_id", "left_anti").select(*shared),
            allowMissingColumns=True,
        )
    return (
        features.join(_name_holders(counted), "name_concat", "left")
        .join(_phone_given_names(counted), "phone", "left")
        .join(F.broadcast(_given_names_known(counted)), "first_name", "left")
        .withColumns(
            {
                "phone_fixed_line": _fixed_line(F.col("phone")),
                "name_key": _name_key(F.col("first_name"), F.col("last_name")),
                "name_spellings": F.when(
                    F.col("source") != "social",
                    _name_spellings(F.col("first_name"), F.col("last_name")),
                ),
                "email_user": _blank_to_null(F.regexp_extract("email", r"^[^@]+", 0)),
                "phone_last8": _digits_tail(F.col("phone"), 8),
                "phone_anagram": _digit_anagram(F.col("phone")),
            }
        )
        .withColumns(
            {
                "aliases": _aliases(),
                "initial_spelling": F.concat(
                    F.substring(_letters(F.col("first_name")), 1, 1), _letters(F.col("last_name"))
                ),
            }
        )
        .withColumn(
            "spellings",
            F.array_distinct(
                F.concat(
                    F.col("aliases"), F.coalesce("name_spellings", F.array().cast("array<string>"))
                )
            ),
        )
        .join(_case_ids(interactions), "record_id", "left")
        .drop("social_handle", "maybe_korean")
    )


def load_features(spark: SparkSession, settings: Settings) -> DataFrame:
    """Linkage features of the current silver customer records."""
    return build_features(
        read_table(spark, settings, SILVER_CUSTOMER_RECORDS),
        read_table(spark, settings, SILVER_INTERACTIONS),
    )
