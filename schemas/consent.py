"""Consent purposes: what a customer may be contacted or targeted for.

Each silver record carries ``<purpose>_opt_in``, the customer 360 ``consent_<purpose>``, and a
segment names the purpose its audience needs. The quality gates check these columns against
this list, so it lives here, apart from the code that fills them.
"""

from __future__ import annotations

from typing import Literal, get_args

ConsentPurpose = Literal["email", "sms", "push", "ads"]
CONSENT_PURPOSES: tuple[str, ...] = get_args(ConsentPurpose)
