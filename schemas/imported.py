"""The contract of a customer table a user brings to ``omnicdp identity resolve --input``.

It is not a landing file of one of the five sources: its columns are the user's own, and each
run says which column holds which field (``--map FIELD=COLUMN``). Each field fills one column of
silver.customer_records (:data:`schemas.tables.CUSTOMER_RECORDS`), standardized as silver's is;
the rows become records of source ``IMPORTED_SOURCE``. Fields not mapped are missing.
"""

from __future__ import annotations

# The source imported records carry in linkage features (identity.byod, identity.features).
IMPORTED_SOURCE = "imported"

# What a --map FIELD may be -> the silver column it fills.
FIELD_COLUMNS = {
    "first_name": "first_name",
    "last_name": "last_name",
    "full_name": "full_name",
    "dob": "dob",
    "email": "email",
    "phone": "phone",
    "address": "address_line",
    "postcode": "postcode",
    "city": "city",
    "loyalty_id": "loyalty_id",
}
FIELDS = tuple(FIELD_COLUMNS)
