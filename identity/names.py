"""Person names as linkage needs them: which part is the given name, which the family name.

Sources write names very differently. Web and app forms have separate first and last name
fields (which Korean customers sometimes fill the other way round); a till, a call-center agent
or a social profile gives one string, in Western order ("minji kim") or Korean order ("kim
minji"), with the given name as one word, hyphenated or split ("min-ji", "min ji"), sometimes
with a title ("mr kim") or a nickname ("bob" for "robert"). This module turns all of them into
a given name and a family name that can be compared directly, plus the set of formal given names
a first name may stand for. The reference lists are the common cases, not exhaustive ones:
a name they miss still reaches the fuzzy comparison levels of the model.
"""

from __future__ import annotations

from itertools import chain

from pyspark.sql import Column
from pyspark.sql import functions as F

# Romanizations of common Korean family names -> one spelling. Frequent family names that
# are rarely a syllable of a given name are "strong": their position tells the name order.
_KR_FAMILY_STRONG: dict[str, tuple[str, ...]] = {
    "kim": ("gim",),
    "lee": ("yi", "rhee", "rhie", "ri", "i"),
    "park": ("pak", "bak", "bahk"),
    "choi": ("choe", "choy"),
    "jung": ("jeong", "chung", "joung", "cheong"),
    "kang": ("gang",),
    "cho": ("jo", "joe"),
    "yoon": ("yun", "youn"),
    "jang": ("chang",),
    "lim": ("im", "rim", "yim"),
    "han": ("hahn",),
    "oh": ("o",),
    "seo": ("suh",),
    "shin": ("sin", "shinn"),
    "kwon": ("gwon",),
    "hwang": ("whang",),
    "ahn": ("an",),
    "song": (),
    "jeon": ("jun", "chun", "chon"),
    "hong": (),
    "yoo": ("yu", "you", "ryu", "ryoo"),
    "ko": ("go", "koh"),
    "moon": ("mun",),
    "yang": (),
    "son": ("sohn",),
    "bae": ("pae",),
    "baek": ("paek", "baik", "paik"),
    "heo": ("huh", "hur"),
    "nam": (),
    "noh": ("roh", "no", "ro"),
    "kwak": ("gwak",),
    "sung": ("seong",),
    "cha": (),
    "joo": ("ju", "chu"),
    "byun": ("byeon", "pyun"),
    "eom": ("um", "uhm"),
    "koo": ("ku", "gu"),
    "chae": (),
}
# Family names that are just as often a syllable of a given name ("min", "jin").
_KR_FAMILY_WEAK: dict[str, tuple[str, ...]] = {
    "min": (),
    "jin": ("chin",),
    "ha": (),
    "na": ("ra",),
    "won": (),
    "ji": ("jee",),
    "hyun": ("hyeon",),
    "bang": (),
    "woo": ("wu", "u"),
}

# Common English nicknames -> the formal given names they stand for.
_NICKNAMES: dict[str, tuple[str, ...]] = {
    "bob": ("robert",), "bobby": ("robert",), "rob": ("robert",), "robbie": ("robert",),
    "bill": ("william",), "billy": ("william",), "will": ("william",), "willie": ("william",),
    "liam": ("william",), "rick": ("richard",), "rich": ("richard",), "richie": ("richard",),
    "dick": ("richard",), "jim": ("james",), "jimmy": ("james",), "jamie": ("james",),
    "jack": ("john",), "johnny": ("john", "jonathan"), "jon": ("john", "jonathan"),
    "joe": ("joseph",), "joey": ("joseph",), "tom": ("thomas",), "tommy": ("thomas",),
    "charlie": ("charles",), "chuck": ("charles",), "chris": ("christopher", "christina",
    "christine"), "mike": ("michael",), "mikey": ("michael",), "mick": ("michael",),
    "dan": ("daniel",), "danny": ("daniel",), "dave": ("david",), "davey": ("david",),
    "matt": ("matthew",), "tony": ("anthony",), "andy": ("andrew",), "drew": ("andrew",),
    "steve": ("steven", "stephen"), "ed": ("edward",), "eddie": ("edward",),
    "ted": ("edward", "theodore"), "ben": ("benjamin",), "benny": ("benjamin",),
    "sam": ("samuel", "samantha"), "sammy": ("samuel", "samantha"),
    "alex": ("alexander", "alexandra"), "al": ("albert", "alfred", "alexander"),
    "nick": ("nicholas",), "josh": ("joshua",), "tim": ("timothy",), "timmy": ("timothy",),
    "pat": ("patrick", "patricia"), "greg": ("gregory",), "ken": ("kenneth",),
    "kenny": ("kenneth",), "ron": ("ronald",), "ronnie": ("ronald",), "don": ("donald",),
    "ray": ("raymond",), "larry": ("lawrence",), "jerry": ("gerald",), "pete": ("peter",),
    "jeff": ("jeffrey",), "doug": ("douglas",), "fred": ("frederick",), "hank": ("henry",),
    "harry": ("henry", "harold"), "walt": ("walter",), "gene": ("eugene",),
    "frank": ("francis", "franklin"), "zach": ("zachary",), "zack": ("zachary",),
    "nate": ("nathan", "nathaniel"), "jake": ("jacob",), "theo": ("theodore",),
    "vince": ("vincent",), "phil": ("phillip", "philip"), "len": ("leonard",),
    "lenny": ("leonard",), "art": ("arthur",), "bert": ("albert", "robert"),
    "liz": ("elizabeth",), "lizzie": ("elizabeth",), "beth": ("elizabeth",),
    "betty": ("elizabeth",), "betsy": ("elizabeth",), "libby": ("elizabeth",),
    "maggie": ("margaret",), "meg": ("margaret",), "peggy": ("margaret",),
    "kate": ("katherine", "catherine", "kathryn"), "katie": ("katherine", "catherine",
    "kathryn"), "kathy": ("katherine", "kathryn"), "cathy": ("catherine",),
    "jen": ("jennifer",), "jenny": ("jennifer",), "jess": ("jessica",),
    "jessie": ("jessica",), "patty": ("patricia",), "trish": ("patricia",),
    "sue": ("susan",), "susie": ("susan",), "deb": ("deborah", "debra"),
    "debbie": ("deborah", "debra"), "becky": ("rebecca",), "becca": ("rebecca",),
    "tina": ("christina",), "kim": ("kimberly",), "vicky": ("victoria",),
    "tori": ("victoria",), "abby": ("abigail",), "barb": ("barbara",),
    "judy": ("judith",), "pam": ("pamela",), "cindy": ("cynthia",), "sandy": ("sandra",),
    "steph": ("stephanie",), "terry": ("teresa", "theresa", "terrence"),
    "missy": ("melissa",), "mandy": ("amanda",), "fran": ("frances",),
    "frannie": ("frances",), "ginny": ("virginia",), "carrie": ("caroline", "carolyn"),
    "maddie": ("madeline", "madison"), "ally": ("allison",), "allie": ("allison",),
    "liv": ("olivia",), "gabby": ("gabrielle", "gabriella"), "jackie": ("jacqueline",),
    "josie": ("josephine",), "ellie": ("eleanor", "elizabeth"), "evie": ("evelyn",),
    "emmy": ("emily",), "bella": ("isabella",), "izzy": ("isabella",), "annie": ("ann", "anna"),
    "molly": ("mary",), "polly": ("mary",), "nancy": ("ann", "anne"), "dot": ("dorothy",),
    "dottie": ("dorothy",), "marge": ("margaret",), "lexi": ("alexandra",),
}  # fmt: skip

_TITLES = ("mr", "mrs", "ms", "miss", "mx", "dr", "sir", "madam")


def _literal_map(mapping: dict[str, str]) -> Column:
    return F.create_map(*[F.lit(x) for x in chain.from_iterable(mapping.items())])


def _spellings(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {v: k for k, variants in table.items() for v in (k, *variants)}


def kr_family(token: Column) -> Column:
    """The standard spelling of a Korean family name, or null if ``token`` is not one."""
    return _literal_map({**_spellings(_KR_FAMILY_WEAK), **_spellings(_KR_FAMILY_STRONG)})[token]


def _strong_family(token: Column) -> Column:
    return _literal_map(_spellings(_KR_FAMILY_STRONG))[token].isNotNull()


# Spelling differences between the romanizations of one Korean syllable, in the order they are
# undone: long vowels as English spells them ("jee", "mean", "joon"), the Revised and the
# McCune-Reischauer vowels ("seo"/"suh", "eun"/"un", "yeon"/"yun"), and the consonants the
# systems write voiced or unvoiced ("kyung"/"gyeong", "chung"/"jung", "tae"/"dae", "rhee").
_ROMANIZATION_FOLDS = (
    ("ee", "i"), ("ea", "i"), ("ie", "i"), ("oo", "u"), ("eo", "u"), ("eu", "u"), ("ou", "u"),
    ("wu", "u"), ("ui", "i"), ("ae", "e"), ("ai", "e"), ("ay", "e"), ("sh", "s"), ("ch", "j"),
    ("k", "g"), ("t", "d"), ("p", "b"), ("r", "l"),
)  # fmt: skip

# Prefix of a sound key among formal names, so a key only ever equals another key.
SOUND_KEY_PREFIX = "~"


def romanization_key(given: Column) -> Column:
    """A Korean given name's sound, whatever romanization wrote it: "meanjee", "min-ji" and
    "minji" share one key, as do "suk-jeen" and "seokjin" or "gyeonghoh" and "kyungho".

    The folds (``_ROMANIZATION_FOLDS``, then a silent "h" closing a syllable, then doubled
    letters) only join spellings of one sound; they keep "minji" and "minjun", or "jiho" and
    "jiwoo", apart. They are Korean rules (an English "tina" and "dina" are different names),
    so callers apply them to names that may be Korean only.
    """
    key = F.regexp_replace(F.lower(given), "[^a-z]", "")
    for spelling, sound in _ROMANIZATION_FOLDS:
        key = F.replace(key, F.lit(spelling), F.lit(sound))
    key = F.regexp_replace(key, "h(?=[^aeiouwy]|$)", "")
    key = F.regexp_replace(key, "(.)\\1+", "$1")
    return F.when(F.length(key) > 0, F.concat(F.lit(SOUND_KEY_PREFIX), key))


def formal_names(first: Column, sound_key: Column | None = None) -> Column:
    """The given names ``first`` may stand for: itself, the formal ones of a nickname, and
    ``sound_key`` (its :func:`romanization_key` where the name may be Korean), so that two
    romanizations of one name overlap as a nickname and its formal name do."""
    nick = F.create_map(
        *chain.from_iterable((F.lit(k), F.array(*map(F.lit, v))) for k, v in _NICKNAMES.items())
    )
    names = F.array_union(F.array(first), F.coalesce(nick[first], F.array()))
    if sound_key is not None:
        names = F.array_union(names, F.array_compact(F.array(sound_key)))
    return F.when(first.isNotNull(), names)


def _tokens(full_name: Column) -> Column:
    """Lower-case name words without titles (silver names are already cleaned of punctuation)."""
    words = F.split(F.trim(F.lower(full_name)), r"\s+")
    return F.filter(words, lambda w: (w != "") & ~w.isin(*_TITLES))


def _joined(parts: Column) -> Column:
    """Given-name parts as one word: "min-ji", "min ji" and "minji" all become "minji"."""
    return F.when(F.size(parts) > 0, F.regexp_replace(F.array_join(parts, ""), "-", ""))


def split_full_name(full_name: Column, maybe_korean: Column) -> tuple[Column, Column]:
    """(given, family) from a single name string, in either order.

    For a name that may be Korean, a strong Korean family name first ("kim min ji") or a Korean
    family name last ("min ji kim") tells the order; otherwise the first word is the given name
    and the last word the family name ("kim smith" in a US store is Kim Smith). A title with one
    word ("mr kim") leaves only a family name; one word alone ("shirley") only a given name.
    """
    t = _tokens(full_name)
    n = F.size(t)
    head, tail = F.element_at(t, 1), F.element_at(t, -1)
    middle_and_tail, head_and_middle = F.slice(t, 2, n), F.slice(t, 1, n - 1)
    titled = F.size(F.split(F.trim(F.lower(full_name)), r"\s+")) > n
    family_first = maybe_korean & (
        _strong_family(head) | (kr_family(head).isNotNull() & kr_family(tail).isNull())
    )
    family_last = maybe_korean & kr_family(tail).isNotNull()
    given = (
        F.when(n == 0, None)
        .when(n == 1, F.when(titled, None).otherwise(head))
        .when(family_first, _joined(middle_and_tail))
        .when(family_last, _joined(head_and_middle))
        .otherwise(head)
    )
    family = (
        F.when(n == 0, None)
        .when(n == 1, F.when(titled, head))
        .when(family_first, head)
        .otherwise(tail)
    )
    return given, family


def structured_names(first: Column, last: Column, maybe_korean: Column) -> tuple[Column, Column]:
    """(given, family) from form fields, undoing a Korean family name typed as first name."""
    given = F.regexp_replace(F.lower(F.trim(first)), r"[\s-]", "")
    family = F.lower(F.trim(last))
    swapped = maybe_korean & _strong_family(given) & kr_family(family).isNull()
    return (
        F.when(swapped, family).otherwise(given),
        F.when(swapped, given).otherwise(family),
    )


def standard_family(family: Column) -> Column:
    """One spelling per Korean family name ("yi", "rhee" -> "lee"); other names unchanged."""
    return F.coalesce(kr_family(family), family)
