"""The linkage model: what Splink compares, how it finds candidate pairs, and how it is trained.

One Fellegi-Sunter model deduplicates all five sources at once (``dedupe_only`` over silver
customer records). The sources describe people very differently: POS knows a typed name, a
phone and a loyalty card; call center a name as heard and a phone; social a display name and
whatever contact details a customer wrote in a DM; web and app know email, names, date of birth
and more. Every comparison therefore has a null level, so a field one source never has is
neutral evidence instead of a mismatch.

Households are the hard case: members share phone, address and often the surname, and differ
in first name and date of birth. A model that scores phone, address and name independently adds
up the strong phone and address agreements and merges them. So the phone and address
comparisons split their "exact match" levels by what the first names of the two records say.
On a phone records give under one given name only (one person's phone), first names that are
merely *compatible* (see :func:`first_names_compatible`: one missing, a social display name)
are enough. On a household's phone or address they must *agree* (see
:func:`first_names_agree`: both real given names, and similar): a record without a given name,
a call center record with only the family name, or a social profile could be any member, so
there it reaches only the weak "shared" level, together with "clearly different first name".
That level's u is what different people sharing a household phone or address show, so a POS,
call center or social record of one household member does not join another member's cluster.
A phone is a household's when its records give more than one given name, spellings of one name
(a nickname, two romanizations of a Korean name, a typing slip) counting once, or when it is a
landline (see ``features._phone_given_names`` and :func:`one_persons_phone`). Counting every
spelling as a member made one person whose name a cashier and an agent wrote differently look
like a household: on the 2,000-person simulation 228 phones looked shared, 34 are (54 now).

Training is unsupervised (see :mod:`identity.train`), and EM can only learn how often one
person's records disagree on a field from pairs where that happens among true matches. For
disagreement levels that the EM blocking passes cannot observe, or observe only among other
people (households), the m probability is a stated prior and fixed; EM learns the other levels,
starting from (and, where it sees no pairs, keeping) documented values (:func:`_m`).

Blocking rules were chosen with Splink's cumulative comparison counts (logged by every training
run and stored with the model): each rule adds pairs the earlier ones miss, and none produces
blocks that grow quadratically with data size (no rule on city, country or a surname alone).
On 2,000 simulated people (4,821 records, 5,014 true pairs) all rules together produce 10,778
pairs holding 4,778 of the true pairs. Blocking is not what limits recall there: of the persons
the model splits, only 13 fragment pairs share no blocked pair and some evidence, a fuzzy name
alone ("bryan"/"brian adams"), which would score far below the match threshold anyway.
"""

from __future__ import annotations

from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator, block_on
from splink.internals.blocking_rule_creator import BlockingRuleCreator
from splink.internals.comparison_creator import ComparisonCreator
from splink.internals.comparison_level_creator import ComparisonLevelCreator

# Bumped whenever comparisons, levels or blocking rules change, so saved models say which
# specification they were trained with and an incompatible saved model is retrained.
MODEL_SPEC_VERSION = "4"

UNIQUE_ID = "record_id"

# The name comparison's output column: the one comparison that cannot corroborate a link on its
# own when clustering (identity.cluster).
NAME_COMPARISON = "name"


def _m(level: ComparisonLevelCreator, m: float, *, fixed: bool = False) -> ComparisonLevelCreator:
    """Give a level its m probability: the share of one person's record pairs that land there.

    Unfixed, it is where EM starts and what the level keeps when the EM passes never see it
    (small data, or a level only POS or call center records reach); the starting values are
    what training on the 2,000-person simulation learned, rounded. Fixed, it is a stated prior
    EM does not touch (module doc).
    """
    return level.configure(m_probability=m, fix_m_probability=fixed)


def first_names_compatible(col: str = "{name}_{side}") -> str:
    """SQL true when nothing about the first names says "different people".

    That is: one is missing, they are near-identical, one is a nickname of the other, one is
    the other's initial, first and last name are swapped between the records, or one record is
    a social profile whose display name is no one's given name ("panda guy": a word, not
    evidence). A display name people give elsewhere ("seoa kim") is a name like any other: on
    a phone a household member gives, a sibling's profile with it is not that member.
    ``col`` formats a column reference from ``name`` and ``side`` (``l``/``r``): comparison
    levels use ``first_name_l``, blocking rules ``l.first_name``.
    """

    def c(name: str, side: str) -> str:
        return col.format(name=name, side=side)

    def display_word(side: str) -> str:
        known = c("first_name_known", side)
        return f"({c('source', side)} = 'social' AND NOT coalesce({known}, false))"

    fl, fr = c("first_name", "l"), c("first_name", "r")
    return (
        f"({fl} IS NULL OR {fr} IS NULL OR jaro_winkler({fl}, {fr}) >= 0.8"
        f" OR arrays_overlap({c('first_formal', 'l')}, {c('first_formal', 'r')})"
        f" OR ((length({fl}) = 1 OR length({fr}) = 1) AND substr({fl}, 1, 1) = substr({fr}, 1, 1))"
        f" OR {fl} = {c('last_name', 'r')} OR {fr} = {c('last_name', 'l')}"
        f" OR {display_word('l')} OR {display_word('r')})"
    )


def first_names_agree(col: str = "{name}_{side}") -> str:
    """SQL true when the first names of two records say "same person", not merely "not different".

    Both records give a given name, neither is a social profile, and the names are
    near-identical, one is a nickname of the other, one is the other's initial, or given and
    family name are swapped between the records. A missing given name or a social display name
    is compatible with anyone (:func:`first_names_compatible`) but agrees with no one: on a
    household's phone or address it cannot tell which member a record is. ``col`` as there.
    """

    def c(name: str, side: str) -> str:
        return col.format(name=name, side=side)

    fl, fr = c("first_name", "l"), c("first_name", "r")
    return (
        f"({fl} IS NOT NULL AND {fr} IS NOT NULL"
        f" AND {c('source', 'l')} != 'social' AND {c('source', 'r')} != 'social'"
        f" AND (jaro_winkler({fl}, {fr}) >= 0.8"
        f" OR arrays_overlap({c('first_formal', 'l')}, {c('first_formal', 'r')})"
        f" OR ((length({fl}) = 1 OR length({fr}) = 1) AND substr({fl}, 1, 1) = substr({fr}, 1, 1))"
        f" OR ({fl} = {c('last_name', 'r')} AND {fr} = {c('last_name', 'l')})))"
    )


def one_persons_phone(col: str = "{name}_{side}") -> str:
    """SQL true when the records' phone is given under at most one given name (``col`` as above)
    and is not a landline.

    Social display names and records without both a given and a family name do not count, and
    spellings of one name count once (see ``features._phone_given_names``); a phone no such
    record gives is not known to be shared, so it counts as one person's. A landline
    (``features._fixed_line``) rings in a home: it is a household's like an address, even when
    only one member's named records give it.
    """
    given_names = col.format(name="phone_given_names", side="l")
    fixed_line = col.format(name="phone_fixed_line", side="l")
    return f"(coalesce({given_names}, 0) <= 1 AND NOT coalesce({fixed_line}, false))"


def same_phone_same_person(col: str = "{name}_{side}") -> str:
    """SQL true when a shared phone's first names make it one person's: the phone comparison's
    top two levels. Compatible names on one person's phone, agreeing names on any phone."""
    return (
        f"(({one_persons_phone(col)} AND {first_names_compatible(col)})"
        f" OR {first_names_agree(col)})"
    )


def _compatible() -> cll.CustomLevel:
    return cll.CustomLevel(first_names_compatible())


def _agree() -> cll.CustomLevel:
    return cll.CustomLevel(first_names_agree())


def _both_names_similar(threshold: float) -> cll.And:
    return cll.And(
        cll.JaroWinklerLevel("first_name", threshold), cll.JaroWinklerLevel("last_name", threshold)
    )


def _same_address() -> cll.And:
    return cll.And(cll.ExactMatchLevel("postcode"), cll.JaroWinklerLevel("address_line", 0.9))


def _no_name(side: str) -> str:
    return f"(first_name_{side} IS NULL AND last_name_{side} IS NULL)"


def _has(array: str) -> str:
    return f"coalesce(size({array}), 0) > 0"


def _name_comparison() -> ComparisonCreator:
    """Given and family name, or what an email username or handle says of them, as one fact.

    Levels go from the strongest agreement down. Exact agreement on a name that at most one
    known person carries (see ``features._name_holders``) is a level of its own; on a name
    several people carry it is adjusted by the name's frequency (two "minji kim" records are
    weaker evidence than two "ines oyelaran" records); surname-only agreement by the frequency
    of the surname. A record with only one name ("mr kim", "shirley", "nelson") is compared on
    that name, which may be the other record's family name, spelled as heard ("whyte" for
    "white", "suk-jeen" for "seokjin"): a call center record with one name and the phone of
    the person is that person.

    People build email usernames and social handles from their names, so where the names do not
    agree, an alias that spells the other record's name links a web login that never filled in
    a profile ("wellsrichard@...") or a social profile with a made-up display name (handle
    "jongmin_choi03"). It is a level of this comparison, not a comparison of its own, so a name
    and its spelling in a handle count once. Disagreement with a social display name, and a
    record with no name at all, say little and have levels of their own. A social display name
    that disagrees counts against a match only when it is a given name people give in other
    channels ("brian lee" against "hyunwoo lee"); one no one gives ("panda guy", "coffee girl")
    is as likely anyone's and is no evidence either way, a null level: scored as a level, it
    counted against the social profile of a person whose own phone it shares.
    """
    first, last = "first_name", "last_name"
    return cl.CustomComparison(
        output_column_name=NAME_COMPARISON,
        comparison_description="given and family name, or an alias spelling them",
        comparison_levels=[
            cll.CustomLevel(
                f"({_no_name('l')} AND NOT {_has('aliases_l')})"
                f" OR ({_no_name('r')} AND NOT {_has('aliases_r')})"
            ).configure(is_null_level=True),
            _m(
                cll.CustomLevel(
                    "name_concat_l = name_concat_r AND coalesce(name_people_l, 0) <= 1",
                    label_for_charts="exact, a name at most one known person has",
                ),
                0.55,
            ),
            _m(
                cll.ExactMatchLevel("name_concat").configure(
                    tf_adjustment_column="name_concat", label_for_charts="exact, a shared name"
                ),
                0.25,
            ),
            _m(
                cll.ColumnsReversedLevel(first, last, symmetrical=True).configure(
                    label_for_charts="given and family swapped"
                ),
                0.01,
            ),
            _m(_both_names_similar(0.92).configure(label_for_charts="both JW >= 0.92"), 0.02),
            _m(_both_names_similar(0.8).configure(label_for_charts="both JW >= 0.8"), 0.035),
            _m(
                cll.CustomLevel(
                    f"arrays_overlap(first_formal_l, first_formal_r)"
                    f" AND jaro_winkler({last}_l, {last}_r) >= 0.9",
                    label_for_charts="nickname, same family name",
                ),
                0.01,
            ),
            _m(
                cll.CustomLevel(
                    "(arrays_overlap(aliases_l, name_spellings_r)"
                    " AND coalesce(name_people_r, 0) <= 1)"
                    " OR (arrays_overlap(aliases_r, name_spellings_l)"
                    " AND coalesce(name_people_l, 0) <= 1)",
                    label_for_charts="alias spells the other's name, at most one known person's",
                ),
                0.04,
            ),
            _m(
                cll.CustomLevel(
                    "arrays_overlap(aliases_l, name_spellings_r)"
                    " OR arrays_overlap(aliases_r, name_spellings_l)",
                    label_for_charts="alias spells the other's full name",
                ),
                0.02,
            ),
            _m(
                cll.CustomLevel(
                    "array_contains(aliases_l, initial_spelling_r)"
                    " OR array_contains(aliases_r, initial_spelling_l)",
                    label_for_charts="alias spells the other's initial and family name",
                ),
                0.01,
            ),
            _m(
                cll.CustomLevel(
                    f"(({first}_l IS NULL OR {first}_r IS NULL) AND {last}_l = {last}_r)"
                    f" OR ({last}_l IS NULL AND {first}_l = {last}_r)"
                    f" OR ({last}_r IS NULL AND {first}_r = {last}_l)",
                ).configure(
                    tf_adjustment_column=last, label_for_charts="one name only, the family name"
                ),
                0.01,
                fixed=True,
            ),
            _m(
                cll.CustomLevel(
                    f"(({last}_l IS NULL AND jaro_winkler({first}_l, {last}_r) >= 0.85)"
                    f" OR ({last}_r IS NULL AND jaro_winkler({first}_r, {last}_l) >= 0.85)"
                    f" OR (({first}_l IS NULL OR {first}_r IS NULL)"
                    f" AND jaro_winkler({last}_l, {last}_r) >= 0.85))",
                    label_for_charts="one name only, spelled like the family name",
                ),
                0.005,
                fixed=True,
            ),
            _m(
                cll.CustomLevel(
                    f"({last}_l IS NULL OR {last}_r IS NULL)"
                    f" AND (jaro_winkler({first}_l, {first}_r) >= 0.92"
                    " OR arrays_overlap(first_formal_l, first_formal_r))",
                    label_for_charts="given name only, same or its nickname or romanization",
                ),
                0.005,
            ),
            _m(
                cll.ExactMatchLevel(last).configure(
                    tf_adjustment_column=last, label_for_charts="same family name, given differs"
                ),
                0.005,
            ),
            _m(
                cll.JaroWinklerLevel(first, 0.92).configure(
                    label_for_charts="same given name, family differs"
                ),
                0.002,
            ),
            _m(
                cll.CustomLevel(
                    "(source_l = 'social' AND coalesce(first_name_known_l, false))"
                    " OR (source_r = 'social' AND coalesce(first_name_known_r, false))",
                    label_for_charts="different, one is a social display name someone has",
                ),
                0.01,
            ),
            cll.CustomLevel(
                "source_l = 'social' OR source_r = 'social'",
                label_for_charts="different, one is a social display name no one has",
            ).configure(is_null_level=True),
            _m(
                cll.CustomLevel(
                    f"{_no_name('l')} OR {_no_name('r')}",
                    label_for_charts="one has no name, its alias spells another",
                ),
                0.02,
            ),
            _m(cll.ElseLevel(), 0.002, fixed=True),
        ],
    )


def _dob_comparison() -> ComparisonCreator:
    """Date of birth (a Spark DATE): exact, one typed digit off, day/month swapped, near, far.

    A clearly different date of birth is the strongest evidence that two household members
    are different people, so the "anything else" level matters as much as the exact one.
    """
    return cl.CustomComparison(
        output_column_name="dob",
        comparison_description="date of birth",
        comparison_levels=[
            cll.NullLevel("dob"),
            _m(cll.ExactMatchLevel("dob").configure(label_for_charts="exact"), 0.97),
            _m(
                cll.CustomLevel(
                    # ISO dates as text, the same on every engine: dashes never differ
                    "levenshtein(cast(dob_l AS string), cast(dob_r AS string)) <= 1",
                    label_for_charts="one digit differs",
                ),
                0.01,
            ),
            _m(
                cll.CustomLevel(
                    "year(dob_l) = year(dob_r) AND month(dob_l) = day(dob_r)"
                    " AND day(dob_l) = month(dob_r)",
                    label_for_charts="day and month swapped",
                ),
                0.005,
            ),
            _m(
                cll.AbsoluteDateDifferenceLevel(
                    "dob", input_is_string=False, threshold=1, metric="year"
                ).configure(label_for_charts="within a year"),
                0.005,
                fixed=True,
            ),
            _m(cll.ElseLevel(), 0.01, fixed=True),
        ],
    )


def _email_comparison() -> ComparisonCreator:
    """Email: exact or not. Junk addresses shared by many people are nulled before linkage.

    No frequency adjustment: it would punish a person for having several records with the same
    address. No fuzzy levels: usernames are built from names, so "same username at another
    provider" mostly repeats the name comparison (and two namesakes' "minji.kim@..." agree).
    """
    return cl.CustomComparison(
        output_column_name="email",
        comparison_description="email address",
        comparison_levels=[
            cll.NullLevel("email"),
            _m(cll.ExactMatchLevel("email").configure(label_for_charts="exact"), 0.85),
            _m(cll.ElseLevel(), 0.15),
        ],
    )


def _phone_comparison() -> ComparisonCreator:
    """E.164 phone, with the matching levels split by what the first names say (module doc).

    A phone that records give under one given name only is one person's, and a record with
    compatible first names (a missing given name, a social display name) that shares it is
    that person's. Under several given names it is a household's: only a record whose given
    name agrees with the other's is the same member; one without a given name, with only the
    family name, or a social profile could be any member and reaches only the "shared phone"
    level, whose u different household members sharing a phone set.
    The last-8-digits level catches the same subscriber number standardized with a different
    country code (a number typed without one in a free-text DM); the edit-distance level a
    number typed at a till with one digit wrong or two swapped. Neither is observable in the
    EM passes (POS and DM records have no email or date of birth), so their m is a prior.
    """
    return cl.CustomComparison(
        output_column_name="phone",
        comparison_description="phone number (E.164)",
        comparison_levels=[
            cll.NullLevel("phone"),
            _m(
                cll.CustomLevel(
                    f"phone_l = phone_r AND {one_persons_phone()} AND {first_names_compatible()}",
                    label_for_charts="exact, one person's phone, first names compatible",
                ),
                0.6,
            ),
            _m(
                cll.And(cll.ExactMatchLevel("phone"), _agree()).configure(
                    label_for_charts="exact, household phone, first names agree"
                ),
                0.35,
            ),
            _m(
                cll.ExactMatchLevel("phone").configure(
                    label_for_charts="exact, first names differ or unknown (shared phone)"
                ),
                0.012,
            ),
            _m(
                cll.And(cll.ExactMatchLevel("phone_last8"), _compatible()).configure(
                    label_for_charts="last 8 digits, first names compatible"
                ),
                0.002,
                fixed=True,
            ),
            _m(
                cll.And(cll.DamerauLevenshteinLevel("phone", 1), _compatible()).configure(
                    label_for_charts="one digit mistyped or swapped, first names compatible"
                ),
                0.005,
                fixed=True,
            ),
            _m(cll.ElseLevel(), 0.03),
        ],
    )


def _address_comparison() -> ComparisonCreator:
    """Postcode, street line and city as one comparison: they are one fact, not three.

    Scoring them separately would count the same address three times. The same-address level
    is split for the same household reason as the phone: an address is a household's by nature,
    so only agreeing first names (:func:`first_names_agree`) make it one person's; a missing
    given name or a social display name could be any member's.
    """
    return cl.CustomComparison(
        output_column_name="address",
        comparison_description="postcode, address line and city",
        comparison_levels=[
            cll.And(cll.NullLevel("postcode"), cll.NullLevel("address_line")).configure(
                is_null_level=True
            ),
            _m(
                cll.And(_same_address(), _agree()).configure(
                    label_for_charts="same address, first names agree"
                ),
                0.8,
            ),
            _m(
                _same_address().configure(
                    label_for_charts="same address, first names differ or unknown"
                ),
                0.002,
                fixed=True,
            ),
            _m(cll.ExactMatchLevel("postcode").configure(label_for_charts="same postcode"), 0.06),
            _m(cll.ExactMatchLevel("city").configure(label_for_charts="same city"), 0.1),
            _m(cll.ElseLevel(), 0.05, fixed=True),
        ],
    )


def _case_comparison() -> ComparisonCreator:
    """A support case seen in two records (a DM, an app chat and a call about one complaint).

    Case ids are generated per case, so two people never share one: u is fixed near zero.
    Few of a person's record pairs share a case (one person calls about several cases), so m
    is a small fixed prior, and different cases are no evidence against a match; EM rarely sees
    such pairs in its blocking passes.
    """
    return cl.CustomComparison(
        output_column_name="case",
        comparison_description="shared support case id",
        comparison_levels=[
            cll.CustomLevel(
                "coalesce(size(case_ids_l), 0) = 0 OR coalesce(size(case_ids_r), 0) = 0"
            ).configure(is_null_level=True),
            _m(
                cll.ArrayIntersectLevel("case_ids", min_intersection=1).configure(
                    u_probability=1e-9, fix_u_probability=True, label_for_charts="shared case"
                ),
                0.005,
                fixed=True,
            ),
            _m(cll.ElseLevel().configure(label_for_charts="different cases"), 0.995, fixed=True),
        ],
    )


def comparisons() -> list[ComparisonCreator]:
    """The model's comparisons; their names are the evidence columns of gold.identity_links."""
    return [
        _name_comparison(),
        _dob_comparison(),
        _email_comparison(),
        _phone_comparison(),
        _address_comparison(),
        _case_comparison(),
    ]


# The keys that bring a pair together at prediction: a pair is scored when its records have
# equal values in every column of one key (an array column: one element in common). Kept as
# data so the micro-batch path can narrow the resolved records to the ones a new record can
# be paired with (identity.increment) by the very rules Splink blocks on.
PREDICTION_BLOCKING_KEYS: tuple[tuple[str, ...], ...] = (
    ("email",),
    ("phone",),
    ("first_name", "last_name"),
    ("name_key",),
    ("last_name", "dob"),
    ("first_name", "dob"),
    ("phone_last8",),
    ("phone_anagram",),
    ("postcode", "last_name"),
    ("case_ids",),
    ("spellings",),
)
ARRAY_BLOCKING_COLUMNS = frozenset({"case_ids", "spellings"})


def prediction_blocking_rules() -> list[BlockingRuleCreator]:
    """Candidate pairs scored at prediction: any one shared strong key brings a pair together."""
    return [
        block_on(*key, arrays_to_explode=[c for c in key if c in ARRAY_BLOCKING_COLUMNS] or None)
        for key in PREDICTION_BLOCKING_KEYS
    ]


def deterministic_rules(col: str = "{side}.{name}") -> list[str]:
    """SQL rules that almost never pair different people; ``col`` formats column references.

    They estimate how common matches are (lambda, with their recall ``DETERMINISTIC_RECALL``:
    the share of true matching pairs they find, well below one because POS, call center and
    social records have no email or date of birth), and they keep near-certain matches out of
    the pairs u is estimated from (see :mod:`identity.u_sampling`). Rules use ``l.email``
    style references (``col="{side}.{name}"``) for Splink, ``email_l`` style for scored pairs.
    """

    def c(name: str, side: str) -> str:
        return col.format(name=name, side=side)

    def same(*names: str) -> str:
        return " AND ".join(f"{c(n, 'l')} = {c(n, 'r')}" for n in names)

    return [
        same("email"),
        f"{same('phone', 'last_name')} AND {same_phone_same_person(col)}",
        same("first_name", "last_name", "dob"),
    ]


DETERMINISTIC_RECALL = 0.5


def em_blocking_rules() -> list[BlockingRuleCreator]:
    """EM passes; each estimates m for every comparison its blocking columns do not touch.

    Blocking on date of birth trains name, email, phone and address; blocking on email trains
    name, date of birth, phone and address. Neither brings many household members together, so
    EM does not mistake a household for one person. (Phone and address levels read first names,
    so a pass blocked on names could not train them.)
    """
    return [block_on("dob"), block_on("email")]


def settings_creator() -> SettingsCreator:
    """The untrained model: comparisons, prediction blocking rules and output columns.

    Splink only outputs the ``gamma_`` evidence columns together with the compared values;
    the values stay in Splink's scratch tables, gold.identity_links keeps ids and scores only.
    """
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        comparisons=comparisons(),
        blocking_rules_to_generate_predictions=prediction_blocking_rules(),
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        additional_columns_to_retain=["source"],
        em_convergence=0.001,
        max_iterations=20,
    )


def settings_in_dialect(
    model: SettingsCreator | dict[str, Any], dialect: str
) -> SettingsCreator | dict[str, Any]:
    """``model`` for an engine of ``dialect``: one saved model, whichever engine trained it.

    A saved model holds its comparisons' SQL as rendered for the engine that trained it.
    The specification is rendered again for ``dialect`` and the trained parameters (lambda,
    m and u of every level) are copied over level by level; a saved model of the current
    specification (``SavedModel.is_current_spec``) has the same levels in the same order.
    An untrained creator renders itself for any dialect.
    """
    if isinstance(model, SettingsCreator):
        return model
    rendered = settings_creator().create_settings_dict(dialect)
    rendered["probability_two_random_records_match"] = model["probability_two_random_records_match"]
    for target, trained in zip(rendered["comparisons"], model["comparisons"], strict=True):
        for level, trained_level in zip(
            target["comparison_levels"], trained["comparison_levels"], strict=True
        ):
            for key in ("m_probability", "u_probability"):
                if key in trained_level:
                    level[key] = trained_level[key]
    return rendered
