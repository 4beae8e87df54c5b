"""Identifier normalization in plain Python: one value at a time, no Spark.

Standardize applies these rules to every silver record (the Spark expressions of
``jobs.values`` call or mirror them), and the serving API and erasure requests apply them to a
single value typed at lookup time, so a lookup key is the same string silver holds. They live in
``schemas`` because both sides depend on them and serving must not import Spark.
"""

from __future__ import annotations

import re

import phonenumbers

FALLBACK_PHONE_REGIONS = ("KR", "US")  # for sources that do not say where the customer is
EMAIL_SHAPE = r"^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$"


def normalize_phone(raw: str | None, country: str | None = None) -> str | None:
    """A phone as typed, in E.164 (``phonenumbers``), or None when it is not a valid number.

    Read in ``country`` when given, else in each of ``FALLBACK_PHONE_REGIONS`` in turn."""
    if raw is None or not raw.strip():
        return None
    regions = (country.upper(),) if country else FALLBACK_PHONE_REGIONS
    for region in regions:
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def strip_blank(raw: str | None) -> str | None:
    """Twin of ``blank_to_null``: Spark's ``trim`` strips spaces only, so this does too."""
    value = raw.strip(" ") if raw is not None else None
    return value or None


def normalize_email(raw: str | None) -> str | None:
    """Twin of ``clean_email``: lower-cased and trimmed, or None when it does not look like one."""
    value = strip_blank(raw)
    value = value.lower() if value is not None else None
    return value if value is not None and re.search(EMAIL_SHAPE, value) else None


def normalize_handle(raw: str | None) -> str | None:
    """Twin of the social record key: trimmed, leading '@' dropped, lower-cased."""
    value = strip_blank(raw)
    return re.sub("^@", "", value).lower() if value is not None else None
