"""Spark expressions that standardize one value: names, emails, phones, addresses, dates, consent.

The silver builders (``jobs.standardize``) and bring-your-own-data (``identity.byod``) clean
values with these, so a record means the same whichever way it arrived. Single values typed at
lookup time use the plain-Python twins in ``schemas.identifiers``.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from schemas.identifiers import EMAIL_SHAPE, normalize_phone

COUNTRY_TIMEZONES = {"KR": "Asia/Seoul", "US": "America/New_York"}
# Spark date patterns ``parse_date`` tries, in this order: ISO first (what forms and exports
# write), then compact ISO, then day first. A slashed date is read day/month/year, never
# month/day/year: "03/04/1985" is 3 April (the patterns cannot tell, so one rule is fixed).
DATE_PATTERNS = ("yyyy-MM-dd", "yyyyMMdd", "dd/MM/yyyy")
_ADDRESS_WORDS = {
    r"\bstreet\b": "st",
    r"\bavenue\b": "ave",
    r"\broad\b": "rd",
    r"\bboulevard\b": "blvd",
    r"\bdrive\b": "dr",
    r"\blane\b": "ln",
    r"\bapartment\b": "apt",
    r"\bsuite\b": "ste",
    r"#\s*": "apt ",
}


def blank_to_null(col: Column | str) -> Column:
    """Trimmed value, or null when nothing is left (sources send '' for missing)."""
    value = F.trim(F.col(col) if isinstance(col, str) else col)
    return F.when(value != "", value)


def clean_name(col: Column | str) -> Column:
    """Lower-case letters, spaces, hyphens and apostrophes only; emoji and digits dropped."""
    value = F.lower(blank_to_null(col))
    value = F.regexp_replace(value, r"[^\p{L}\s'-]", " ")
    return blank_to_null(F.regexp_replace(value, r"\s+", " "))


def first_token(col: Column) -> Column:
    return F.element_at(F.split(col, " "), 1)


def last_token(col: Column) -> Column:
    tokens = F.split(col, " ")
    return F.when(F.size(tokens) > 1, F.element_at(tokens, -1))


def clean_email(col: Column | str) -> Column:
    """Lower-cased, trimmed email, or null when it does not look like one."""
    value = F.lower(blank_to_null(col))
    return F.when(value.rlike(EMAIL_SHAPE), value)


def clean_address(col: Column | str) -> Column:
    """Lower-case address with common street words abbreviated, punctuation dropped."""
    value = F.lower(blank_to_null(col))
    for pattern, replacement in _ADDRESS_WORDS.items():
        value = F.regexp_replace(value, pattern, replacement)
    value = F.regexp_replace(value, r"[.,]", " ")
    return blank_to_null(F.regexp_replace(value, r"\s+", " "))


def clean_postcode(col: Column | str) -> Column:
    return blank_to_null(
        F.upper(F.regexp_replace(F.col(col) if isinstance(col, str) else col, r"\s", ""))
    )


def parse_date(col: Column | str) -> Column:
    """Dates in the formats sources use (``DATE_PATTERNS``, first that parses wins);
    impossible birth dates become null."""
    value = blank_to_null(col)
    parsed = F.coalesce(*[F.try_to_date(value, fmt) for fmt in DATE_PATTERNS])
    return F.when((parsed >= F.lit("1900-01-01")) & (parsed <= F.current_date()), parsed)


def parse_bool(col: Column | str) -> Column:
    value = F.lower(blank_to_null(col))
    return F.when(value.isin("true", "yes", "y", "1"), F.lit(True)).when(
        value.isin("false", "no", "n", "0"), F.lit(False)
    )


def to_utc(ts: Column | str, country: Column | str | None = None) -> Column:
    """ISO timestamps carry their offset; store-local ones get their country's time zone."""
    value = F.try_to_timestamp(blank_to_null(ts))
    if country is None:
        return value
    zone = F.create_map(*[F.lit(x) for kv in COUNTRY_TIMEZONES.items() for x in kv])[
        F.upper(F.col(country) if isinstance(country, str) else country)
    ]
    has_offset = F.col(ts).rlike(r"(Z|[+-]\d{2}:?\d{2})$") if isinstance(ts, str) else F.lit(True)
    return F.when(has_offset | zone.isNull(), value).otherwise(F.to_utc_timestamp(value, zone))


@F.pandas_udf(StringType())
def e164(phone: pd.Series, country: pd.Series) -> pd.Series:
    """Parse a phone as typed into E.164 with the ``phonenumbers`` library; invalid -> null."""
    return pd.Series(
        [normalize_phone(p, c) for p, c in zip(phone, country, strict=True)], dtype="object"
    )
