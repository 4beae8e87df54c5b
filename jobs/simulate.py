"""Simulate what five channels' systems export about one population of customers, with the truth.

The files follow the landing contracts in :mod:`schemas.sources` exactly, so the pipeline reads
them as it would read real exports: ``<out>/<source>/<YYYY-MM-DD>/<file>``. Alongside, the ground
truth ``<out>/_truth/identity_truth.csv`` says which person each identity record belongs to; it
is what proves identity resolution, so it never leaks into the source files (ids are random, no
field carries a person id).

The noise is the noise real systems have, not random corruption: names typed at a till or heard
on the phone, nicknames and romanization variants, phone numbers in every format people type,
address spellings, households sharing an address and a phone, people changing their email or
phone, junk values given by customers who would rather not say. Two cross-channel journeys are
planted on purpose because the product exists for them: a complaint that starts on social,
continues in the app chat and ends on the phone under one case id, and a failed web return
followed by a call about it.

Everything comes from one ``random.Random(seed)``, so a seed fixes every byte. Files are written
one day at a time and the population is the only thing kept for the whole run, so 100,000 people
fit comfortably in memory.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import math
import random
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Generic, TypeVar

import phonenumbers

from jobs import simulation_data as data
from schemas.sources import (
    APP,
    CALL_CENTER,
    POS,
    SOCIAL,
    SOURCES,
    WEB,
    SourceSpec,
    normalize_source_key,
)

T = TypeVar("T")

KR, US = "KR", "US"
UTC_OFFSET = {KR: timedelta(hours=9), US: timedelta(hours=-5)}
OFFSET_TEXT = {KR: "+09:00", US: "-05:00"}
CURRENCY = {KR: "KRW", US: "USD"}
NEVER = 1 << 30  # a day index no simulation reaches
TRUTH_COLUMNS = ("source", "source_key", "person_id")

# Share of people with an identity record in each channel during the simulated period.
SHARE_LOYALTY, SHARE_WEB, SHARE_APP, SHARE_CALLS, SHARE_SOCIAL = 0.60, 0.60, 0.45, 0.30, 0.25
# Chance that a new household has 2-4 members: puts ~15% of people in shared households.
MULTI_PERSON_HOUSEHOLD = 0.064
# Daily chance of coming back to a channel after the first visit of the period.
DAILY_POS, DAILY_WEB, DAILY_APP, DAILY_SOCIAL = 0.04, 0.10, 0.15, 0.03
# Daily chance of anonymous activity by people without an account in the channel.
DAILY_ANON_POS, DAILY_ANON_WEB, DAILY_ANON_APP = 0.025, 0.03, 0.01
SHARE_PHONE_CHANGE, SHARE_EMAIL_CHANGE = 0.03, 0.03
SHARE_COMPLAINT_JOURNEY, SHARE_FAILED_RETURN = 0.15, 0.03


# --- randomness ---------------------------------------------------------------------------------


class Dice:
    """The simulator's one random stream, so that a seed fixes every byte of the output.

    ``chance`` is for behaviour (how often people shop); ``noisy`` is for data-quality noise
    (typos, variants, junk) and scales with the ``noise`` setting, so ``noise=0`` gives clean data.
    """

    def __init__(self, seed: int, noise: float) -> None:
        self.rng = random.Random(seed)
        self.noise = noise

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def noisy(self, rate: float) -> bool:
        return self.rng.random() < rate * self.noise

    def pick(self, options: Sequence[T]) -> T:
        return options[int(self.rng.random() * len(options))]

    def between(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``, both included (faster than ``randint``, which counts
        when a simulation makes millions of draws)."""
        return low + int(self.rng.random() * (high - low + 1))

    def digits(self, n: int) -> str:
        return f"{self.rng.randrange(10**n):0{n}d}"

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


class Weighted(Generic[T]):
    """Values drawn by weight, by bisection over cumulative weights (fast for long name lists)."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.values = [value for value, _ in pairs]
        self.cumulative: list[float] = []
        total = 0.0
        for _, weight in pairs:
            total += weight
            self.cumulative.append(total)
        self.total = total

    @classmethod
    def ranked(cls, values: Sequence[T], exponent: float) -> Weighted[T]:
        """Zipf-like weights by rank: a few very common values and a long tail, like real names."""
        return cls([(value, (rank + 1) ** -exponent) for rank, value in enumerate(values)])

    def draw(self, dice: Dice) -> T:
        index = bisect.bisect_right(self.cumulative, dice.rng.random() * self.total)
        return self.values[min(index, len(self.values) - 1)]


class Ids:
    """Random identifiers that never repeat: they look like real system ids and say nothing about
    the person they belong to."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def fresh(self, make: Callable[[], str]) -> str:
        value = make()
        while value in self._taken:
            value = make()
        self._taken.add(value)
        return value


# --- phones -------------------------------------------------------------------------------------


def _valid(e164: str) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(e164))


def _us_exchange(dice: Dice) -> str:
    """A central-office code people really get: not N11, not the fictional 555."""
    while True:
        code = dice.between(200, 999)
        if code % 100 != 11 and code != 555:
            return str(code)


def new_mobile(dice: Dice, country: str, city: str) -> str:
    """A valid mobile number in E.164; US mobiles keep the area code of where they were bought."""
    while True:
        if country == KR:
            number = f"+8210{dice.between(2000, 9999)}{dice.digits(4)}"
        else:
            local = data.US_CITIES[city][1]
            area = dice.pick(local if dice.chance(0.8) else data.US_MOVER_AREA_CODES)
            number = f"+1{area}{_us_exchange(dice)}{dice.digits(4)}"
        if _valid(number):
            return number


def new_landline(dice: Dice, country: str, city: str) -> str:
    """A valid fixed-line number in the city's area code, in E.164."""
    while True:
        if country == KR:
            area = data.KR_CITIES[city][1]
            length = 8 if area == "2" else dice.pick((7, 8))
            number = f"+82{area}{dice.between(2, 9)}{dice.digits(length - 1)}"
        else:
            area = dice.pick(data.US_CITIES[city][1])
            number = f"+1{area}{_us_exchange(dice)}{dice.digits(4)}"
        if _valid(number):
            return number


def _phone_groups(e164: str) -> tuple[str, str, str]:
    """National digit groups as people write them: 010|1234|5678, 02|123|4567, 415|555|2671."""
    if e164.startswith("+82"):
        national = "0" + e164[3:]
        head = national[:2] if national.startswith("02") else national[:3]
        rest = national[len(head) :]
        return head, rest[:-4], rest[-4:]
    digits = e164[2:]
    return digits[:3], digits[3:6], digits[6:]


_KR_PHONE_FORMATS = Weighted(
    [
        ("{a}-{b}-{c}", 0.50),
        ("{a}{b}{c}", 0.20),
        ("{a} {b} {c}", 0.08),
        ("+82 {a1}-{b}-{c}", 0.08),
        ("+82 {a1} {b} {c}", 0.07),
        ("{e}", 0.07),
    ]
)
_US_PHONE_FORMATS = Weighted(
    [
        ("({a}) {b}-{c}", 0.30),
        ("{a}-{b}-{c}", 0.25),
        ("{a}.{b}.{c}", 0.10),
        ("{a}{b}{c}", 0.10),
        ("{e}", 0.10),
        ("+1 {a}-{b}-{c}", 0.08),
        ("1-{a}-{b}-{c}", 0.07),
    ]
)


def typed_phone(e164: str, dice: Dice) -> str:
    """The number as a person or a form writes it: each system and person has a habit."""
    a, b, c = _phone_groups(e164)
    formats = _KR_PHONE_FORMATS if e164.startswith("+82") else _US_PHONE_FORMATS
    return formats.draw(dice).format(a=a, a1=a.lstrip("0"), b=b, c=c, e=e164)


def slip_digits(phone: str, dice: Dice) -> str:
    """Swap two neighbouring digits of the subscriber part, the commonest phone typo."""
    positions = [i for i, ch in enumerate(phone) if ch.isdigit()][-7:]
    pairs = [(i, j) for i, j in itertools.pairwise(positions) if phone[i] != phone[j]]
    if not pairs:
        return phone
    i, j = dice.pick(pairs)
    chars = list(phone)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


# --- names --------------------------------------------------------------------------------------

_KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {
    ch: row[max(i - 1, 0) : i] + row[i + 1 : i + 2]
    for row in _KEYBOARD_ROWS
    for i, ch in enumerate(row)
}
# Spelling changes that keep the sound: what an agent types for a name heard on the phone.
_SOUND_RULES = (
    ("ph", "f"),
    ("ck", "k"),
    ("ll", "l"),
    ("tt", "t"),
    ("nn", "n"),
    ("rr", "r"),
    ("ey", "y"),
    ("ie", "y"),
    ("ee", "ea"),
    ("ou", "o"),
    ("c", "k"),
    ("s", "z"),
    ("i", "y"),
)
_KR_FAMILY = Weighted([(name, share) for name, share, _ in data.KR_FAMILY_NAMES])
_KR_FAMILY_VARIANTS = {name: variants for name, _, variants in data.KR_FAMILY_NAMES}
_KR_GIVEN = {
    "F": Weighted.ranked([tuple(n.split("-")) for n in data.KR_GIVEN_FEMALE], 0.8),
    "M": Weighted.ranked([tuple(n.split("-")) for n in data.KR_GIVEN_MALE], 0.8),
}
_US_FIRST = {
    "F": Weighted.ranked(data.US_FIRST_FEMALE, 0.7),
    "M": Weighted.ranked(data.US_FIRST_MALE, 0.7),
}
_US_LAST = Weighted.ranked(data.US_LAST, 0.6)


def typo(text: str, dice: Dice) -> str:
    """One keyboard slip (neighbour key, swapped, dropped or doubled letter), never on the first
    letter: people rarely mistype the letter they start with."""
    positions = [i for i, ch in enumerate(text) if ch.isalpha()][1:]
    if len(positions) < 2:
        return text
    i = dice.pick(positions)
    ch = text[i]
    roll = dice.rng.random()
    if roll < 0.35 and ch.lower() in _NEIGHBOURS:
        swap = dice.pick(_NEIGHBOURS[ch.lower()])
        return text[:i] + (swap.upper() if ch.isupper() else swap) + text[i + 1 :]
    if roll < 0.6 and i + 1 < len(text) and text[i + 1].isalpha():
        return text[:i] + text[i + 1] + ch + text[i + 2 :]
    if roll < 0.8:
        return text[:i] + text[i + 1 :]
    return text[:i] + ch + text[i:]


def misspell_by_ear(name: str, dice: Dice) -> str:
    """A spelling that sounds the same, for names heard rather than read."""
    known = data.US_SOUND_ALIKES.get(name)
    if known:
        return dice.pick(known)
    lower = name.lower()
    rules = [(old, new) for old, new in _SOUND_RULES if old in lower[1:]]
    if not rules:
        return name
    old, new = dice.pick(rules)
    at = lower.index(old, 1)
    changed = lower[:at] + new + lower[at + len(old) :]
    return changed[:1].upper() + changed[1:]


def kr_given_spelling(syllables: tuple[str, ...], dice: Dice, *, variants: bool) -> str:
    """A Korean given name written one of the ways it is written: "Minji", "Min-ji", "Min Ji",
    "MinJi", and with other romanizations of its syllables ("Hyun"/"Hyeon") when ``variants``."""
    parts = [
        dice.pick(data.KR_SYLLABLE_VARIANTS[s])
        if variants and s in data.KR_SYLLABLE_VARIANTS and dice.chance(0.5)
        else s
        for s in syllables
    ]
    roll = dice.rng.random()
    if roll < 0.4:
        return "-".join(parts).capitalize()
    if roll < 0.7:
        return " ".join(p.capitalize() for p in parts)
    if roll < 0.8:
        return "".join(p.capitalize() for p in parts)
    return "".join(parts).capitalize()


def _clean(text: str) -> str:
    """Letters and digits only, lower-case: the way names end up in emails and handles."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


# --- places and products ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """A home address in parts, so each system can write it its own way."""

    country: str
    number: str
    street: str  # KR: road name; US: street name without its suffix
    area: str  # KR: district (gu); US: street suffix abbreviation
    direction: str  # US only: "" or a compass abbreviation
    unit: str  # KR: "101-1203" (dong-ho); US: "4B"; "" for a house
    city: str
    postcode: str
    plus4: str = ""  # US ZIP+4 extension, written by some forms only


def new_address(dice: Dice, country: str, city: str) -> Address:
    if country == KR:
        district, roads, (low, high) = dice.pick(data.KR_CITIES[city][2])
        unit = f"{dice.between(101, 118)}-{dice.between(1, 25)}{dice.between(1, 4):02d}"
        return Address(
            country=KR,
            number=str(dice.between(1, 400)),
            street=dice.pick(roads),
            area=district,
            direction="",
            unit=unit if dice.chance(0.65) else "",
            city=city,
            postcode=f"{dice.between(low, high):05d}",
        )
    low, high = data.US_CITIES[city][2]
    unit = f"{dice.between(1, 24)}{dice.pick(('', '', 'A', 'B', 'C'))}"
    return Address(
        country=US,
        number=str(dice.between(1, 9800)),
        street=dice.pick(data.US_STREETS),
        area=dice.pick(tuple(data.US_STREET_SUFFIXES)),
        direction=dice.pick(tuple(data.US_DIRECTIONS)) if dice.chance(0.15) else "",
        unit=unit if dice.chance(0.35) else "",
        city=city,
        postcode=f"{dice.between(low, high):05d}",
        plus4=dice.digits(4),
    )


def _kr_address_line(a: Address, dice: Dice) -> str:
    unit = a.unit
    if not dice.noisy(0.35):
        return f"{a.number} {a.street}, {a.area}" + (f", Apt {unit}" if unit else "")
    dong, _, ho = unit.partition("-")
    styles = (
        f"{a.street} {a.number}, {a.area}" + (f" {unit}" if unit else ""),
        f"{a.number}, {a.street}, {a.area}" + (f", {dong}-dong {ho}-ho" if unit else ""),
        f"{a.area} {a.street} {a.number}" + (f" #{unit}" if unit else ""),
        f"{a.number} {a.street}" + (f" Apt {unit}" if unit else ""),
    )
    return dice.pick(styles)


def _us_address_line(a: Address, dice: Dice) -> str:
    suffix = data.US_STREET_SUFFIXES[a.area] if dice.noisy(0.25) else a.area
    direction = data.US_DIRECTIONS.get(a.direction, "") if dice.noisy(0.2) else a.direction
    street = " ".join(part for part in (a.number, direction, a.street, suffix) if part)
    if not a.unit or dice.noisy(0.05):
        return street
    unit = f"Apt {a.unit}"
    if dice.noisy(0.35):
        unit = dice.pick((f"#{a.unit}", f"Apt. {a.unit}", f"Unit {a.unit}", f", Apt {a.unit}"))
    return f"{street}{unit}" if unit.startswith(",") else f"{street} {unit}"


def render_address(a: Address, dice: Dice) -> tuple[str, str, str]:
    """(address line, postcode, city) as one form or person writes them."""
    line = _kr_address_line(a, dice) if a.country == KR else _us_address_line(a, dice)
    if dice.noisy(0.04):
        line = line.upper()
    variants = (data.KR_CITY_VARIANTS if a.country == KR else data.US_CITY_VARIANTS)[a.city]
    city = dice.pick(variants) if dice.noisy(0.08) else a.city
    postcode = a.postcode
    if a.country == US and dice.noisy(0.05):
        postcode = f"{postcode}-{a.plus4}"
    return line, postcode, city


@dataclass(frozen=True, slots=True)
class Store:
    store_id: str
    country: str
    city: str
    phone: str  # E.164; cashiers type it for customers who will not give theirs


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    category: str
    usd_cents: int


@dataclass(frozen=True, slots=True)
class LineItem:
    product: Product
    qty: int
    unit_minor: int  # cents for USD, won for KRW


def new_catalog(dice: Dice) -> list[Product]:
    return [
        Product(f"{prefix}{n:05d}", category, dice.between(low, high) // 100 * 100 - 1)
        for category, (prefix, low, high) in data.CATEGORIES.items()
        for n in range(1, data.SKUS_PER_CATEGORY + 1)
    ]


def unit_price(product: Product, country: str) -> int:
    """Price in the minor unit of the country's currency; KRW prices are round hundreds."""
    if country == KR:
        return round(product.usd_cents * data.KRW_PER_USD / 10000) * 100
    return product.usd_cents


def money(minor: int, country: str) -> str:
    """Decimal text with two places; KRW has no minor unit, so it is whole won ".00"."""
    if country == KR:
        return f"{minor}.00"
    return f"{minor // 100}.{minor % 100:02d}"


_QUANTITY = Weighted([(1, 0.8), (2, 0.15), (3, 0.05)])


def new_basket(dice: Dice, catalog: Sequence[Product], country: str) -> list[LineItem]:
    return [
        LineItem(product, _QUANTITY.draw(dice), unit_price(product, country))
        for product in (dice.pick(catalog) for _ in range(dice.between(1, 4)))
    ]


def basket_total(items: Sequence[LineItem], country: str) -> str:
    return money(sum(item.qty * item.unit_minor for item in items), country)


# --- people -------------------------------------------------------------------------------------


@dataclass(slots=True)
class LoyaltyCard:
    number: str
    name: str  # as typed at the till when the card was issued
    phone: str
    first_day: int


@dataclass(slots=True)
class WebAccount:
    logins: list[str]  # login emails; a second one after the person changed email
    cookies: list[str]
    first_day: int
    profile_pending: bool  # will fill in the profile form at the next visit


@dataclass(slots=True)
class AppAccount:
    account_id: str
    devices: list[tuple[str, str]]  # (device_id, platform)
    push_opt_in: str
    traits: dict[str, str | None]  # the account block the app sends: email, names, phone, dob
    first_day: int
    signup_day: int  # NEVER when the account was created before the period
    signed_up: bool


@dataclass(slots=True)
class SocialAccount:
    platform: str
    handle: str
    display_name: str
    first_day: int
    contact_pending: bool  # will write an email or phone in a message when asked


@dataclass(eq=False, slots=True)
class Person:
    """One real person; only the truth file knows ``person_id``."""

    person_id: str
    country: str
    sex: str
    first: str
    last: str
    given: tuple[str, ...]  # romanized syllables of a Korean given name, else empty
    dob: date
    home: Address
    mobile: str
    email: str
    home_store: Store
    household: list[Person] = field(default_factory=list)  # the other members
    landline: str = ""
    shared_phone: str = ""  # a household phone this person gives instead of their mobile
    new_mobile: str = ""
    phone_change_day: int = NEVER
    email_change_day: int = NEVER
    card: LoyaltyCard | None = None
    web: WebAccount | None = None
    app: AppAccount | None = None
    social: SocialAccount | None = None
    anonymous_cookie: str = ""
    anonymous_device: str = ""

    def phone_on(self, day: int) -> str:
        """The phone number this person gives on ``day``."""
        if self.shared_phone:
            return self.shared_phone
        return self.new_mobile if day >= self.phone_change_day else self.mobile

    def login_on(self, day: int) -> str:
        assert self.web is not None
        return self.web.logins[-1] if day >= self.email_change_day else self.web.logins[0]


def full_name(first: str, last: str, *, family_first: bool) -> str:
    return f"{last} {first}" if family_first else f"{first} {last}"


def other_first_name(p: Person, dice: Dice) -> str:
    """The given name as someone else writes it: a nickname or another spelling."""
    if p.country == KR:
        return kr_given_spelling(p.given, dice, variants=True)
    nicknames = data.US_NICKNAMES.get(p.first)
    if nicknames and dice.chance(0.7):
        return dice.pick(nicknames)
    return misspell_by_ear(p.first, dice)


def other_last_name(p: Person, dice: Dice) -> str:
    if p.country == KR:
        variants = _KR_FAMILY_VARIANTS.get(p.last, ())
        return dice.pick(variants) if variants else p.last
    return misspell_by_ear(p.last, dice)


def till_name(p: Person, dice: Dice) -> str:
    """The name a cashier types: often upper-case, sometimes a nickname, a typo or only the
    first name, sometimes nothing."""
    if dice.noisy(0.03):
        return ""
    first = other_first_name(p, dice) if dice.noisy(0.06) else p.first
    if dice.noisy(0.05):
        name = first
    elif p.country == US and dice.chance(0.04):
        name = f"{p.last}, {first}"
    else:
        name = full_name(first, p.last, family_first=p.country == KR and dice.chance(0.5))
    if dice.noisy(0.05):
        name = typo(name, dice)
    return name.upper() if dice.chance(0.2) else name


def heard_name(p: Person, dice: Dice) -> str:
    """The name a call-center agent types from what they heard."""
    if dice.noisy(0.03):
        return ""
    first = other_first_name(p, dice) if dice.noisy(0.12) else p.first
    last = other_last_name(p, dice) if dice.noisy(0.08) else p.last
    if dice.noisy(0.08):
        title = ("Ms." if p.sex == "F" else "Mr.") if dice.chance(0.4) else ""
        return f"{title} {last}".strip()
    if dice.noisy(0.04):
        return first
    return full_name(first, last, family_first=p.country == KR and dice.chance(0.6))


def form_names(p: Person, dice: Dice) -> tuple[str, str]:
    """(first, last) as the person fills a form: mostly right; Koreans sometimes swap the
    fields, Americans sometimes give their nickname."""
    first, last = p.first, p.last
    if dice.noisy(0.05):
        first = other_first_name(p, dice)
    if dice.noisy(0.01):
        first = typo(first, dice)
    if p.country == KR and dice.noisy(0.04):
        first, last = last, first
    if dice.chance(0.05):
        first, last = first.lower(), last.lower()
    return first, last


def ship_to_name(p: Person, dice: Dice) -> str:
    first, last = form_names(p, dice)
    return full_name(first, last, family_first=p.country == KR and dice.chance(0.5))


def display_name(p: Person, dice: Dice) -> str:
    """A social profile's name: the real name, decorated, a nickname, or nothing like it."""
    if dice.noisy(0.10):
        return f"{dice.pick(data.HANDLE_WORDS)} {dice.pick(data.HANDLE_NOUNS)}"
    if dice.noisy(0.10):
        if p.country == KR:
            english = data.KR_ENGLISH_NAMES_FEMALE if p.sex == "F" else data.KR_ENGLISH_NAMES_MALE
            return f"{dice.pick(english)} {p.last}"
        return f"{other_first_name(p, dice)} {p.last[0]}."
    emoji = dice.pick(data.DISPLAY_EMOJI)
    roll = dice.rng.random()
    if roll < 0.15:
        return f"{p.first} {p.last} {emoji}"
    if roll < 0.25:
        return f"{p.first.lower()} {emoji}"
    return full_name(p.first, p.last, family_first=p.country == KR and dice.chance(0.3))


def case_noise(email: str, dice: Dice) -> str:
    """Upper-case letters people type into email fields (emails are case-insensitive)."""
    local, _, domain = email.partition("@")
    roll = dice.rng.random()
    if roll < 0.5:
        return f"{local.capitalize()}@{domain.capitalize()}"
    if roll < 0.8:
        return email.upper()
    parts = re.split(r"([._])", local)
    return "".join(part.capitalize() for part in parts) + "@" + domain.capitalize()


# --- population ---------------------------------------------------------------------------------


_HOUSEHOLD_SIZE = Weighted([(2, 0.55), (3, 0.30), (4, 0.15)])


class PopulationBuilder:
    """Creates people in households, with their channel accounts and their own ways of writing
    themselves, and keeps emails, handles and ids unique across people as real systems do."""

    def __init__(
        self, dice: Dice, start: date, days: int, stores: Sequence[Store], ids: Ids
    ) -> None:
        self.dice = dice
        self.start = start
        self.days = days
        self.stores = stores
        self.ids = ids
        self.emails: set[str] = set()
        self.handles: set[str] = set()
        self.households = 0
        self._kr_cities = Weighted([(c, v[0]) for c, v in data.KR_CITIES.items()])
        self._us_cities = Weighted([(c, v[0]) for c, v in data.US_CITIES.items()])
        self._domains = {c: Weighted(d) for c, d in data.EMAIL_DOMAINS.items()}
        self._platforms = {c: Weighted(p) for c, p in data.SOCIAL_PLATFORMS.items()}

    # households and people

    def build(self, count: int) -> list[Person]:
        people: list[Person] = []
        while len(people) < count:
            size = 1
            if self.dice.chance(MULTI_PERSON_HOUSEHOLD):
                size = _HOUSEHOLD_SIZE.draw(self.dice)
            people.extend(self._household(min(size, count - len(people)), len(people)))
        for person in people:
            self._enrol(person)
        return people

    def _household(self, size: int, first_index: int) -> list[Person]:
        dice = self.dice
        country = KR if dice.chance(0.5) else US
        city = (self._kr_cities if country == KR else self._us_cities).draw(dice)
        home = new_address(dice, country, city)
        head_age = dice.between(30, 75) if size > 1 else dice.between(19, 80)
        head = self._person(first_index, country, dice.pick("FM"), head_age, home, None)
        members = [head]
        for n in range(1, size):
            spouse = n == 1 and (size > 2 or dice.chance(0.7))
            if spouse:
                sex = "F" if head.sex == "M" else "M"
                age = max(19, head_age + dice.between(-6, 6))
                # Korean spouses keep their family name; most US spouses share it.
                shares_name = country == US and dice.chance(0.85)
            else:
                sex, age, shares_name = (
                    dice.pick("FM"),
                    max(16, head_age - dice.between(24, 36)),
                    True,
                )
            surname = head.last if shares_name else None
            members.append(self._person(first_index + n, country, sex, age, home, surname))
        if size > 1:
            self._share_phones(members)
        elif dice.chance(0.08):
            head.landline = new_landline(dice, country, city)
        return members

    def _share_phones(self, members: list[Person]) -> None:
        """Households often have a landline, and some members give the landline or another
        member's mobile instead of their own: distinct people, one phone number."""
        self.households += 1
        head = members[0]
        landline = (
            new_landline(self.dice, head.country, head.home.city) if self.dice.chance(0.5) else ""
        )
        for member in members:
            member.landline = landline
            member.household = [m for m in members if m is not member]
        for member in members[1:]:
            if self.dice.chance(0.35):
                member.shared_phone = (
                    landline if landline and self.dice.chance(0.5) else head.mobile
                )

    def _person(
        self, index: int, country: str, sex: str, age: int, home: Address, surname: str | None
    ) -> Person:
        dice = self.dice
        if country == KR:
            given = _KR_GIVEN[sex].draw(dice)
            first, last = "".join(given).capitalize(), surname or _KR_FAMILY.draw(dice)
        else:
            given = ()
            first, last = _US_FIRST[sex].draw(dice), surname or _US_LAST.draw(dice)
        born = self.start - timedelta(days=age * 365 + dice.between(0, 364))
        stores = [s for s in self.stores if s.country == country]
        local_stores = [s for s in stores if s.city == home.city] or stores
        person = Person(
            person_id=f"P{index + 1:06d}",
            country=country,
            sex=sex,
            first=first,
            last=last,
            given=given,
            dob=born,
            home=home,
            mobile=new_mobile(dice, country, home.city),
            email="",
            home_store=dice.pick(local_stores),
        )
        person.email = self.new_email(person)
        return person

    # identifiers people choose

    def new_email(self, p: Person) -> str:
        """A personal email, unique across people: mostly built from the name and birth year."""
        dice = self.dice
        first, last, yy = _clean(p.first), _clean(p.last), f"{p.dob.year % 100:02d}"
        if dice.chance(0.1):
            local = (
                f"{dice.pick(data.HANDLE_WORDS)}{dice.pick(data.HANDLE_NOUNS)}{dice.between(1, 99)}"
            )
        else:
            local = dice.pick(
                (
                    f"{first}.{last}",
                    f"{first}{last}{yy}",
                    f"{last}{first}",
                    f"{first[0]}{last}{yy}",
                    f"{first}_{last}",
                    f"{first}{dice.between(1, 999)}",
                )
            )
        return self._unique_email(local, self._domains[p.country].draw(dice))

    def _unique_email(self, local: str, domain: str) -> str:
        email = f"{local}@{domain}"
        while email in self.emails:
            email = f"{local}{self.dice.between(1, 9999)}@{domain}"
        self.emails.add(email)
        return email

    def _junk_login(self) -> str:
        """A throwaway login email; account systems still force it to be unique."""
        local, _, domain = self.dice.pick(data.JUNK_EMAILS).partition("@")
        return self._unique_email(local, domain)

    def _handle(self, p: Person) -> str:
        dice = self.dice
        first, last, yy = _clean(p.first), _clean(p.last), f"{p.dob.year % 100:02d}"
        if dice.noisy(0.2):
            base = f"{dice.pick(data.HANDLE_WORDS)}_{dice.pick(data.HANDLE_NOUNS)}"
        else:
            base = dice.pick(
                (
                    f"{first}.{last}{yy}",
                    f"{first}{last}",
                    f"{last}_{first}",
                    f"{first}_{last}{yy}",
                    f"the{first}{last}",
                    f"{first}{yy}",
                )
            )
        handle = base
        while handle in self.handles:
            handle = f"{base}{dice.between(1, 999)}"
        self.handles.add(handle)
        if dice.chance(0.15):
            return "".join(part.capitalize() for part in re.split(r"([._])", handle))
        return handle

    # channel accounts

    def _first_day(self) -> int:
        return self.dice.between(0, self.days - 1)

    def _enrol(self, p: Person) -> None:
        dice = self.dice
        if self.days > 1 and dice.chance(SHARE_PHONE_CHANGE):
            p.new_mobile = new_mobile(dice, p.country, p.home.city)
            p.phone_change_day = dice.between(1, self.days - 1)
        if dice.chance(SHARE_LOYALTY):
            p.card = self._card(p)
        if dice.chance(SHARE_WEB):
            p.web = self._web(p)
        if dice.chance(SHARE_APP):
            p.app = self._app(p)
        if dice.chance(SHARE_SOCIAL):
            p.social = self._social(p)

    def _card(self, p: Person) -> LoyaltyCard:
        dice = self.dice
        prefix = "9410" if p.country == KR else "9420"
        number = self.ids.fresh(lambda: prefix + dice.digits(12))
        if dice.noisy(0.01):
            phone = typed_phone(p.home_store.phone, dice)  # refused: cashier typed the store's
        elif dice.noisy(0.03):
            phone = ""
        else:
            given = p.landline if p.landline and dice.chance(0.1) else p.phone_on(0)
            phone = typed_phone(given, dice)
            if dice.noisy(0.015):
                phone = slip_digits(phone, dice)
        return LoyaltyCard(number, till_name(p, dice), phone, self._first_day())

    def _web(self, p: Person) -> WebAccount:
        dice = self.dice
        if dice.noisy(0.004):
            logins = [self._junk_login()]
        elif dice.chance(0.1):
            logins = [self.new_email(p)]  # a second address kept for shopping
        else:
            logins = [p.email]
        first_day = self._first_day()
        if self.days > 1 and dice.chance(SHARE_EMAIL_CHANGE):
            logins.append(self.new_email(p))
            p.email_change_day = dice.between(1, self.days - 1)
            first_day = dice.between(0, p.email_change_day - 1)
        cookies = [dice.uuid() for _ in range(dice.between(1, 2))]
        return WebAccount(logins, cookies, first_day, profile_pending=dice.chance(0.95))

    def _app(self, p: Person) -> AppAccount:
        dice = self.dice
        account_id = self.ids.fresh(lambda: "A" + dice.hex(12))
        devices = []
        for _ in range(2 if dice.chance(0.1) else 1):
            if dice.chance(0.5):
                devices.append((dice.uuid().upper(), "ios"))
            else:
                devices.append((dice.hex(16), "android"))
        first_day = self._first_day()
        new_signup = dice.chance(0.2)
        return AppAccount(
            account_id=account_id,
            devices=devices,
            push_opt_in="true" if dice.chance(0.55) else "false",
            traits=self._app_traits(p),
            first_day=first_day,
            signup_day=first_day if new_signup else NEVER,
            signed_up=not new_signup,
        )

    def _app_email(self, p: Person) -> str:
        """Most retailers' app and web share one account system, so the app usually knows the
        web login; otherwise people sign up with their usual or another address."""
        dice = self.dice
        if p.web and dice.chance(0.85):
            return p.web.logins[0]
        return p.email if dice.chance(0.8) else self.new_email(p)

    def _app_traits(self, p: Person) -> dict[str, str | None]:
        dice = self.dice
        if dice.noisy(0.005):
            email = "test@test.com"  # not an identity key in the app, so nothing forces it unique
        else:
            email = self._app_email(p)
            if dice.noisy(0.05):
                email = case_noise(email, dice)
        first, last = form_names(p, dice)
        phone = None if dice.noisy(0.15) else typed_phone(p.phone_on(0), dice)
        dob = None if dice.noisy(0.2) else p.dob.isoformat()
        return {"email": email, "first_name": first, "last_name": last, "phone": phone, "dob": dob}

    def _social(self, p: Person) -> SocialAccount:
        dice = self.dice
        return SocialAccount(
            platform=self._platforms[p.country].draw(dice),
            handle=self._handle(p),
            display_name=display_name(p, dice),
            first_day=self._first_day(),
            contact_pending=not self.dice.noisy(0.10),
        )


# --- landing files and truth --------------------------------------------------------------------


@dataclass
class SourceCounts:
    files: int = 0
    lines: int = 0  # data lines, CSV header rows not counted
    records: int = 0  # distinct identity records (rows of the truth file)


@dataclass
class SimulationSummary:
    """What was written, for the CLI to show and for tests and benchmarks to check."""

    out: Path
    truth_path: Path
    seed: int
    days: int
    people: int
    identified_people: int  # people with at least one identity record in the files
    households: int  # households of two or more
    complaint_journeys: int
    failed_return_journeys: int
    sources: dict[str, SourceCounts]

    @property
    def total_lines(self) -> int:
        return sum(counts.lines for counts in self.sources.values())

    @property
    def total_records(self) -> int:
        return sum(counts.records for counts in self.sources.values())


def day_file(source: str, day: date, store_id: str = "") -> str:
    """File name of one export; POS exports one file per store per day."""
    stamp = day.strftime("%Y%m%d")
    if source == POS.name:
        return f"pos_{store_id}_{stamp}.csv"
    stem = {"web": "web_events", "app": "app_events", "call_center": "calls", "social": "social"}
    return f"{stem[source]}_{stamp}.{SOURCES[source].file_format}"


def json_row(spec: SourceSpec, **values: object) -> dict[str, object]:
    """A JSON line in layout order: every top-level leaf (null when absent), nested records only
    when the event has them."""
    row: dict[str, object] = {}
    for name, kind in spec.layout.items():
        if kind is None:
            row[name] = values.pop(name, None)
        elif name in values:
            row[name] = values.pop(name)
    if values:
        raise KeyError(f"not in the {spec.name} layout: {sorted(values)}")
    return row


class Landing:
    """Buffers one day of rows per file, writes them time-ordered, and records the truth."""

    def __init__(self, out: Path, stores: Sequence[Store]) -> None:
        self.out = out
        self.stores = stores
        self.counts = {name: SourceCounts() for name in SOURCES}
        self.truth: dict[tuple[str, str], str] = {}
        self._rows: dict[str, list[tuple[datetime, int, dict[str, object]]]] = defaultdict(list)
        self._seq = 0

    def add(
        self,
        source: str,
        file_name: str,
        at_utc: datetime,
        row: dict[str, object],
        owner: Person | None,
    ) -> None:
        """Queue a row; ``owner`` is the person behind its identity key (None: anonymous)."""
        self._seq += 1
        self._rows[file_name].append((at_utc, self._seq, row))
        if owner is not None:
            self._remember(source, str(row[SOURCES[source].identity_key]), owner)

    def _remember(self, source: str, raw_key: str, owner: Person) -> None:
        key = (source, normalize_source_key(source, raw_key))
        known = self.truth.setdefault(key, owner.person_id)
        if known != owner.person_id:
            raise RuntimeError(f"simulator bug: one {source} identity key for two people")

    def write_day(self, day: date) -> int:
        """Write every file of ``day`` (header-only or empty when nothing happened); lines."""
        written = 0
        for source in SOURCES:
            if source == POS.name:
                names = [day_file(source, day, store.store_id) for store in self.stores]
            else:
                names = [day_file(source, day)]
            folder = self.out / source / day.isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                rows = [row for _, _, row in sorted(self._rows.pop(name, []), key=_order)]
                self._write(SOURCES[source], folder / name, rows)
                self.counts[source].files += 1
                self.counts[source].lines += len(rows)
                written += len(rows)
        return written

    @staticmethod
    def _write(spec: SourceSpec, path: Path, rows: list[dict[str, object]]) -> None:
        with path.open("w", encoding="utf-8", newline="") as handle:
            if spec.file_format == "csv":
                writer = csv.DictWriter(handle, fieldnames=spec.columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
            else:
                for row in rows:
                    handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
                    handle.write("\n")

    def write_truth(self) -> Path:
        path = self.out / "_truth" / "identity_truth.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(TRUTH_COLUMNS)
            for (source, key), person_id in sorted(self.truth.items()):
                writer.writerow((source, key, person_id))
                self.counts[source].records += 1
        return path


def _order(entry: tuple[datetime, int, dict[str, object]]) -> tuple[datetime, int]:
    return entry[0], entry[1]


# --- channels -----------------------------------------------------------------------------------


@dataclass
class World:
    """What every channel simulator shares: the dice, the calendar, stores, products, output."""

    dice: Dice
    landing: Landing
    start: date
    stores: list[Store]
    catalog: list[Product]
    ids: Ids

    def date_of(self, day: int) -> date:
        return self.start + timedelta(days=day)

    def local_time(self, day: int, hours: tuple[int, int]) -> datetime:
        """A local moment on ``day`` between ``hours[0]`` and ``hours[1]`` o'clock."""
        seconds = self.dice.between(hours[0] * 3600, hours[1] * 3600 - 1)
        return datetime.combine(self.date_of(day), datetime.min.time()) + timedelta(seconds=seconds)

    def later(self, moment: datetime, low: int = 5, high: int = 180) -> datetime:
        """A moment a little after ``moment``, kept on the same day so that an event always
        lands in the file of the day it belongs to."""
        end_of_day = datetime.combine(moment.date(), datetime.max.time()).replace(microsecond=0)
        return min(moment + timedelta(seconds=self.dice.between(low, high)), end_of_day)

    def case_id(self) -> str:
        """A CRM case number; the same case id follows a customer across channels."""
        return self.ids.fresh(lambda: "CS" + self.dice.digits(8))


def iso(moment: datetime, country: str) -> str:
    """ISO 8601 with the country's UTC offset, as the web, app, social and CRM systems write."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + OFFSET_TEXT[country]


def to_utc(moment: datetime, country: str) -> datetime:
    return moment - UTC_OFFSET[country]


def _items(items: Sequence[LineItem], country: str) -> list[dict[str, str]]:
    return [
        {
            "sku": item.product.sku,
            "category": item.product.category,
            "qty": str(item.qty),
            "unit_price": money(item.unit_minor, country),
        }
        for item in items
    ]


def _order_record(world: World, p: Person, day: int, order_id: str) -> dict[str, object]:
    """An online order shipped home: ship-to written by the customer at checkout."""
    dice = world.dice
    items = new_basket(dice, world.catalog, p.country)
    recipient = dice.pick(p.household) if p.household and dice.noisy(0.03) else p
    address, postcode, city = render_address(p.home, dice)
    phone = None if dice.noisy(0.1) else typed_phone(p.phone_on(day), dice)
    return {
        "order_id": order_id,
        "amount": basket_total(items, p.country),
        "currency": CURRENCY[p.country],
        "items": _items(items, p.country),
        "ship_to": {
            "name": ship_to_name(recipient, dice),
            "address": address,
            "postcode": postcode,
            "city": city,
            "phone": phone,
        },
    }


def _browse_page(world: World) -> str:
    dice = world.dice
    product = dice.pick(world.catalog)
    return dice.pick(
        (
            "/",
            f"/category/{product.category}",
            f"/products/{product.sku}",
            f"/products/{product.sku}",
            f"/search?q={product.category}",
            "/cart",
        )
    )


class PosChannel:
    """Till exports: baskets, with the loyalty card's name and phone as the till has them."""

    def __init__(self, world: World) -> None:
        self.world = world

    def day(self, p: Person, day: int) -> None:
        dice = self.world.dice
        card = p.card
        if card and (day == card.first_day or dice.chance(DAILY_POS)):
            self.basket(p, day, with_card=day == card.first_day or not dice.noisy(0.05))
        elif not card and dice.chance(DAILY_ANON_POS):
            self.basket(p, day, with_card=False)

    def basket(self, p: Person, day: int, *, with_card: bool) -> None:
        world, dice = self.world, self.world.dice
        store = p.home_store
        if dice.chance(0.1):
            store = dice.pick([s for s in world.stores if s.country == p.country])
        moment = world.local_time(day, (10, 22))
        items = new_basket(dice, world.catalog, p.country)
        stamp = world.date_of(day).strftime("%Y%m%d")
        till = f"T{dice.between(1, 4)}"
        row: dict[str, object] = {
            "transaction_id": world.ids.fresh(
                lambda: f"{store.store_id}{stamp}{till}{dice.digits(6)}"
            ),
            "store_id": store.store_id,
            "store_country": p.country,
            "till_id": till,
            "ts": moment.strftime("%Y-%m-%d %H:%M:%S"),
            "basket": "|".join(
                f"{i.product.sku}:{i.product.category}:{i.qty}:{money(i.unit_minor, p.country)}"
                for i in items
            ),
            "amount": basket_total(items, p.country),
            "currency": CURRENCY[p.country],
        }
        if with_card and p.card:
            row.update(self._card_fields(p, p.card, day))
        name = day_file(POS.name, world.date_of(day), store.store_id)
        world.landing.add(POS.name, name, to_utc(moment, p.country), row, p if with_card else None)

    def _card_fields(self, p: Person, card: LoyaltyCard, day: int) -> dict[str, str]:
        """Mostly what the loyalty system has on file; sometimes the cashier retypes it."""
        dice = self.world.dice
        name, phone = card.name, card.phone
        if dice.noisy(0.15):
            name = till_name(p, dice)
        if dice.noisy(0.1):
            phone = typed_phone(p.phone_on(day), dice)
        return {"loyalty_card": card.number, "customer_name": name, "phone": phone}


class WebChannel:
    """Clickstream and account events: anonymous browsing by cookie, logins that tie a cookie to
    an email, profile and consent updates, orders and returns."""

    def __init__(self, world: World) -> None:
        self.world = world

    def day(self, p: Person, day: int) -> None:
        dice = self.world.dice
        web = p.web
        if web:
            if day in (web.first_day, p.email_change_day) or dice.chance(DAILY_WEB):
                self.session(p, day)
            elif dice.chance(DAILY_ANON_WEB):
                self.browse(p, day)  # visits without logging in
        elif dice.chance(DAILY_ANON_WEB):
            self.browse(p, day)

    def _emit(
        self,
        p: Person,
        moment: datetime,
        cookie: str,
        login: str | None,
        event: str,
        page: str,
        **nested: object,
    ) -> None:
        world = self.world
        row = json_row(
            WEB,
            event_id=world.dice.uuid(),
            ts=iso(moment, p.country),
            cookie_id=cookie,
            login_email=login,
            site_country=p.country,
            event_type=event,
            page=page,
            **nested,
        )
        name = day_file(WEB.name, moment.date())
        world.landing.add(WEB.name, name, to_utc(moment, p.country), row, p if login else None)

    def browse(self, p: Person, day: int) -> None:
        """Anonymous page views: a cookie and nothing else."""
        world = self.world
        if not p.anonymous_cookie:
            p.anonymous_cookie = world.dice.uuid()
        moment = world.local_time(day, (7, 24))
        for _ in range(world.dice.between(1, 4)):
            self._emit(p, moment, p.anonymous_cookie, None, "page_view", _browse_page(world))
            moment = world.later(moment)

    def session(
        self,
        p: Person,
        day: int,
        *,
        failed_return: bool = False,
        case_id: str = "",
        hours: tuple[int, int] = (7, 23),
    ) -> None:
        """A visit: some anonymous pages, a login, then what the customer came to do."""
        world, dice = self.world, self.world.dice
        web = p.web
        assert web is not None
        cookie = dice.pick(web.cookies)
        moment = world.local_time(day, hours)
        for _ in range(dice.between(0, 3)):
            self._emit(p, moment, cookie, None, "page_view", _browse_page(world))
            moment = world.later(moment)
        login = self._typed_login(p.login_on(day))
        self._emit(p, moment, cookie, login, "login", "/login")
        for _ in range(dice.between(1, 5)):
            moment = world.later(moment)
            self._emit(p, moment, cookie, login, "page_view", _browse_page(world))

        def emit(event: str, page: str, **nested: object) -> None:
            nonlocal moment
            moment = world.later(moment, 20, 300)
            self._emit(p, moment, cookie, login, event, page, **nested)

        if web.profile_pending or day == p.email_change_day or dice.chance(0.04):
            web.profile_pending = False
            emit("profile_update", "/account/profile", profile=self._profile(p, day))
        if (day == web.first_day and dice.chance(0.25)) or dice.chance(0.04):
            emit("consent_update", "/account/preferences", consent=self._consent())
        if dice.chance(0.15):
            emit("order", "/checkout", order=_order_record(world, p, day, self._order_id()))
        if failed_return:
            emit("page_view", "/account/orders")
            emit("return_request", "/returns", return_request=self._return(failed=True))
            emit("page_view", "/help/returns")
        elif dice.chance(0.02):
            emit("return_request", "/returns", return_request=self._return(failed=False))
        if case_id:
            emit("page_view", f"/help/cases/{case_id}")

    def _typed_login(self, email: str) -> str:
        dice = self.world.dice
        if dice.noisy(0.08):
            email = case_noise(email, dice)
        if dice.noisy(0.01):
            email = f" {email} "
        return email

    def _order_id(self) -> str:
        dice = self.world.dice
        return self.world.ids.fresh(lambda: "W" + dice.digits(9))

    def _profile(self, p: Person, day: int) -> dict[str, str | None]:
        dice = self.world.dice
        first, last = form_names(p, dice)
        address, postcode, city = render_address(p.home, dice)
        dob = p.dob.isoformat()
        if dice.noisy(0.005):
            dob = "1970-01-01"  # the form's default, never changed
        elif dice.noisy(0.01):
            dob = p.dob.replace(year=p.dob.year + dice.pick((-1, 1))).isoformat()
        phone = typed_phone(p.phone_on(day), dice)
        if dice.noisy(0.01):
            phone = slip_digits(phone, dice)
        return {
            "first_name": first,
            "last_name": last,
            "dob": None if dice.noisy(0.1) else dob,
            "phone": None if dice.noisy(0.08) else phone,
            "address": address,
            "postcode": postcode,
            "city": city,
        }

    def _consent(self) -> dict[str, str]:
        return {
            "email_opt_in": self._flag(0.6),
            "sms_opt_in": self._flag(0.35),
            "ads_opt_in": self._flag(0.45),
        }

    def _flag(self, p: float) -> str:
        return "true" if self.world.dice.chance(p) else "false"

    def _return(self, *, failed: bool) -> dict[str, str | None]:
        dice = self.world.dice
        return {
            "order_id": self._order_id(),  # an earlier order, often from before the period
            "status": "failed" if failed else dice.pick(("submitted", "approved")),
            "reason": dice.pick(data.RETURN_REASONS),
            "error": dice.pick(data.RETURN_ERRORS) if failed else None,
        }


class AppChannel:
    """Mobile app events: devices, accounts with the traits the SDK sends on every session start,
    orders, push and support chat."""

    def __init__(self, world: World) -> None:
        self.world = world

    def day(self, p: Person, day: int) -> None:
        dice = self.world.dice
        app = p.app
        if app:
            if day == app.first_day or (day >= self._opened(app) and dice.chance(DAILY_APP)):
                self.session(p, day)
        elif dice.chance(DAILY_ANON_APP):
            self.anonymous(p, day)

    @staticmethod
    def _opened(app: AppAccount) -> int:
        """First day the account can be used: its signup day, or the start for older accounts."""
        return 0 if app.signup_day == NEVER else app.signup_day

    def _emit(
        self,
        p: Person,
        moment: datetime,
        device: tuple[str, str],
        event: str,
        *,
        signed_in: bool = True,
        **nested: object,
    ) -> None:
        world = self.world
        app = p.app if signed_in else None
        row = json_row(
            APP,
            event_id=world.dice.uuid(),
            ts=iso(moment, p.country),
            device_id=device[0],
            account_id=app.account_id if app else None,
            app_country=p.country,
            platform=device[1],
            push_opt_in=app.push_opt_in if app else None,
            event_type=event,
            **nested,
        )
        name = day_file(APP.name, moment.date())
        world.landing.add(APP.name, name, to_utc(moment, p.country), row, p if app else None)

    def _product(self) -> dict[str, str]:
        product = self.world.dice.pick(self.world.catalog)
        return {"sku": product.sku, "category": product.category}

    def anonymous(self, p: Person, day: int) -> None:
        """A device browsing without an account."""
        world = self.world
        if not p.anonymous_device:
            p.anonymous_device = world.dice.hex(16)
        device = (p.anonymous_device, "android")
        moment = world.local_time(day, (7, 24))
        self._emit(p, moment, device, "app_open", signed_in=False)
        for _ in range(world.dice.between(1, 3)):
            moment = world.later(moment)
            self._emit(p, moment, device, "product_view", signed_in=False, product=self._product())

    def session(
        self, p: Person, day: int, *, case_id: str = "", hours: tuple[int, int] = (7, 23)
    ) -> None:
        world, dice = self.world, self.world.dice
        app = p.app
        assert app is not None
        device = dice.pick(app.devices)
        moment = world.local_time(day, hours)
        if app.push_opt_in == "true" and dice.chance(0.1):
            self._emit(p, moment, device, "push_open")
            moment = world.later(moment, 1, 5)
        if not app.signed_up:
            self._emit(p, moment, device, "app_open", signed_in=False)
            moment = world.later(moment, 30, 240)
            self._emit(p, moment, device, "signup", account=dict(app.traits))
            app.signed_up = True
        else:
            self._emit(p, moment, device, "app_open", account=dict(app.traits))
        for _ in range(dice.between(1, 5)):
            moment = world.later(moment)
            self._emit(p, moment, device, "product_view", product=self._product())
        if dice.chance(0.10):
            moment = world.later(moment, 20, 300)
            order_id = world.ids.fresh(lambda: "M" + dice.digits(9))
            self._emit(p, moment, device, "order", order=_order_record(world, p, day, order_id))
        if case_id:
            for _ in range(dice.between(1, 2)):
                moment = world.later(moment, 30, 600)
                text = dice.pick(data.CHAT_CASE_TEXTS).format(case_id=case_id)
                self._emit(
                    p, moment, device, "support_chat", chat={"case_id": case_id, "text": text}
                )
        elif dice.chance(0.03):
            moment = world.later(moment)
            chat = {"case_id": world.case_id(), "text": dice.pick(data.CHAT_TEXTS)}
            self._emit(p, moment, device, "support_chat", chat=chat)


class CallCenterChannel:
    """The CRM's call log: one row per call, the case it belongs to, the number telephony saw
    and the name the agent heard."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._reasons = Weighted(list(data.CALL_REASON_WEIGHTS.items()))

    def reason(self) -> str:
        return self._reasons.draw(self.world.dice)

    def call(
        self, p: Person, day: int, case_id: str, reason: str, *, hours: tuple[int, int] = (9, 18)
    ) -> None:
        world, dice = self.world, self.world.dice
        moment = world.local_time(day, hours)
        heated = reason in ("complaint", "return")
        row: dict[str, object] = {
            "call_id": world.ids.fresh(lambda: "CL" + dice.digits(10)),
            "case_id": case_id,
            "ts_start": iso(moment, p.country),
            "caller_number": self._caller_number(p, day),
            "caller_name": heard_name(p, dice),
            "center_country": p.country,
            "reason": reason,
            "disposition": dice.pick(data.CALL_REASONS[reason]),
            "handle_time_s": str(
                min(3600, max(30, int(dice.rng.lognormvariate(math.log(300), 0.6))))
            ),
            "transferred": "true" if dice.chance(0.3 if heated else 0.1) else "false",
            "escalated": "true" if dice.chance(0.4 if heated else 0.05) else "false",
        }
        name = day_file(CALL_CENTER.name, moment.date())
        world.landing.add(CALL_CENTER.name, name, to_utc(moment, p.country), row, p)

    def _caller_number(self, p: Person, day: int) -> str:
        """E.164 from telephony: the person's phone, or withheld, or the household landline."""
        dice = self.world.dice
        if dice.noisy(0.04):
            return ""
        if p.landline and dice.chance(0.15):
            return p.landline
        if dice.noisy(0.01):
            return new_mobile(dice, p.country, p.home.city)  # a borrowed or work phone
        return p.phone_on(day)


class SocialChannel:
    """Social DMs: what customers write (with their email or phone when asked) and the brand's
    replies, in one thread per conversation keyed by the customer's handle."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._topics = Weighted([("question", 0.5), ("complaint", 0.25), ("praise", 0.25)])

    def day(self, p: Person, day: int) -> None:
        social = p.social
        if social and (day == social.first_day or self.world.dice.chance(DAILY_SOCIAL)):
            self.thread(p, day, self._topics.draw(self.world.dice))

    def _emit(
        self,
        p: Person,
        moment: datetime,
        direction: str,
        text: str,
        sentiment: float | None,
        case_id: str,
    ) -> None:
        world, dice = self.world, self.world.dice
        social = p.social
        assert social is not None
        handle = f"@{social.handle}" if dice.noisy(0.1) else social.handle
        row = json_row(
            SOCIAL,
            message_id=world.ids.fresh(lambda: str(dice.between(1, 9)) + dice.digits(18)),
            ts=iso(moment, p.country),
            platform=social.platform,
            handle=handle,
            display_name=social.display_name if direction == "inbound" else None,
            direction=direction,
            text=text,
            sentiment=None if sentiment is None else f"{round(sentiment, 2) + 0.0:.2f}",
            case_id=case_id or None,
        )
        name = day_file(SOCIAL.name, moment.date())
        world.landing.add(SOCIAL.name, name, to_utc(moment, p.country), row, p)

    def thread(
        self,
        p: Person,
        day: int,
        topic: str,
        *,
        case_id: str = "",
        hours: tuple[int, int] = (8, 23),
    ) -> None:
        """A customer message, the brand's reply, and the customer's answer when there is one.
        With ``case_id`` the reply opens that case and the rest of the thread carries it."""
        world, dice = self.world, self.world.dice
        social = p.social
        assert social is not None
        moment = world.local_time(day, hours)
        self._emit(p, moment, "inbound", self._text(p, topic), self._sentiment(topic), "")
        asks_contact = social.contact_pending and not case_id
        if case_id:
            reply = data.REPLY_CASE_TEXT.format(first=p.first, case_id=case_id)
        elif asks_contact:
            reply = data.REPLY_TEXTS[0].format(first=p.first)
        elif dice.chance(0.85):
            reply = dice.pick(data.REPLY_TEXTS[1:]).format(first=p.first)
        else:
            return
        moment = world.later(moment, 300, 5400)
        self._emit(p, moment, "outbound", reply, None, case_id)
        moment = world.later(moment, 60, 1800)
        if social.contact_pending:
            social.contact_pending = False
            text = self._contact(p, day)
            self._emit(p, moment, "inbound", text, dice.rng.uniform(-0.1, 0.2), case_id)
        elif case_id or dice.chance(0.3):
            self._emit(p, moment, "inbound", self._text(p, topic), self._sentiment(topic), case_id)

    def _korean(self, p: Person) -> bool:
        return p.country == KR and self.world.dice.chance(0.5)

    def _text(self, p: Person, topic: str) -> str:
        dice = self.world.dice
        texts = data.DM_TEXTS_KO if self._korean(p) else data.DM_TEXTS_EN
        category = dice.pick(tuple(data.CATEGORIES))
        return dice.pick(texts[topic]).format(category=category, city=p.home.city)

    def _sentiment(self, topic: str) -> float:
        low, high = {"complaint": (-0.95, -0.35), "question": (-0.15, 0.35)}.get(topic, (0.4, 0.95))
        return self.world.dice.rng.uniform(low, high)

    @staticmethod
    def _account_email(p: Person, day: int) -> str:
        """The email "on the account", which is what the brand's reply asks for."""
        if p.web:
            return p.login_on(day)
        if p.app and p.app.traits["email"]:
            return str(p.app.traits["email"]).lower()
        return p.email

    def _contact(self, p: Person, day: int) -> str:
        """A message carrying the email or phone the customer is known by elsewhere."""
        dice = self.world.dice
        korean = self._korean(p)
        if dice.chance(0.55):
            email = self._account_email(p, day)
            if dice.noisy(0.1):
                email = case_noise(email, dice)
            template = dice.pick(data.CONTACT_EMAIL_KO if korean else data.CONTACT_EMAIL_EN)
            return template.format(email=email)
        template = dice.pick(data.CONTACT_PHONE_KO if korean else data.CONTACT_PHONE_EN)
        return template.format(phone=typed_phone(p.phone_on(day), dice))


# --- journeys and the calendar ------------------------------------------------------------------


@dataclass(slots=True)
class Planned:
    """Something a person will do on a given day because of a case or a journey."""

    kind: str  # "call" | "complaint_dm" | "app_chat" | "web_case_page" | "failed_return"
    person: Person
    case_id: str = ""
    reason: str = ""
    hours: tuple[int, int] = (9, 18)


class Calendar:
    """Plans calls and cross-channel journeys ahead, then replays them on their days."""

    def __init__(self, world: World, days: int, calls: CallCenterChannel) -> None:
        self.world = world
        self.days = days
        self.calls = calls
        self.agenda: dict[int, list[Planned]] = defaultdict(list)
        self.complaints = 0
        self.failed_returns = 0

    def _day(self) -> int:
        return self.world.dice.between(0, self.days - 1)

    def _soon(self, day: int, low: int, high: int) -> int:
        return min(day + self.world.dice.between(low, high), self.days - 1)

    def plan_cases(self, people: Sequence[Person]) -> None:
        """Call-center customers have 1-3 cases; one in four cases takes a second call."""
        dice = self.world.dice
        cases = Weighted([(1, 0.7), (2, 0.22), (3, 0.08)])
        for p in people:
            if not dice.chance(SHARE_CALLS):
                continue
            for _ in range(cases.draw(dice)):
                case_id, reason, day = self.world.case_id(), self.calls.reason(), self._day()
                self.agenda[day].append(Planned("call", p, case_id, reason))
                if dice.chance(0.25) and day + 1 < self.days:
                    self.agenda[self._soon(day, 1, 3)].append(Planned("call", p, case_id, reason))

    def plan_complaints(self, people: Sequence[Person]) -> None:
        """Social complaint -> app chat (or the case page on the web) -> phone call, one case id.
        On one day the steps keep their order: DM in the morning, chat at noon, call later."""
        for p in self._sample([p for p in people if p.social], SHARE_COMPLAINT_JOURNEY):
            case_id, start = self.world.case_id(), self._day()
            self.agenda[start].append(Planned("complaint_dm", p, case_id, "complaint", (8, 11)))
            middle = self._soon(start, 0, 1)
            if p.app:
                p.app.first_day = min(p.app.first_day, middle)
                if p.app.signup_day != NEVER:
                    p.app.signup_day = p.app.first_day
                self.agenda[middle].append(Planned("app_chat", p, case_id, "complaint", (12, 14)))
            elif p.web:
                self.agenda[middle].append(Planned("web_case_page", p, case_id, "", (12, 14)))
            call = Planned("call", p, case_id, "complaint", (15, 18))
            self.agenda[self._soon(start, 1, 2)].append(call)
            self.complaints += 1

    def plan_failed_returns(self, people: Sequence[Person]) -> None:
        """A web return that fails, then a call about it within one or two days."""
        for p in self._sample([p for p in people if p.web], SHARE_FAILED_RETURN):
            day = self._day()
            self.agenda[day].append(Planned("failed_return", p, hours=(8, 12)))
            call = Planned("call", p, self.world.case_id(), "return", (14, 18))
            self.agenda[self._soon(day, 1, 2)].append(call)
            self.failed_returns += 1

    def _sample(self, people: list[Person], share: float) -> list[Person]:
        """At least one when anyone qualifies, so even small runs carry every journey."""
        if not people:
            return []
        return self.world.dice.rng.sample(people, max(1, round(share * len(people))))

    def planned(self, day: int) -> list[Planned]:
        return self.agenda.pop(day, [])


@dataclass
class Channels:
    pos: PosChannel
    web: WebChannel
    app: AppChannel
    calls: CallCenterChannel
    social: SocialChannel

    def everyday(self, p: Person, day: int) -> None:
        self.pos.day(p, day)
        self.web.day(p, day)
        self.app.day(p, day)
        self.social.day(p, day)

    def carry_out(self, item: Planned, day: int) -> None:
        p = item.person
        if item.kind == "call":
            self.calls.call(p, day, item.case_id, item.reason, hours=item.hours)
        elif item.kind == "complaint_dm":
            self.social.thread(p, day, "complaint", case_id=item.case_id, hours=item.hours)
        elif item.kind == "app_chat":
            self.app.session(p, day, case_id=item.case_id, hours=item.hours)
        elif item.kind == "web_case_page":
            self.web.session(p, day, case_id=item.case_id, hours=item.hours)
        elif item.kind == "failed_return":
            self.web.session(p, day, failed_return=True, hours=item.hours)
        else:
            raise ValueError(f"unknown planned activity {item.kind!r}")


def new_stores(dice: Dice) -> list[Store]:
    return [
        Store(store_id, country, city, new_landline(dice, country, city))
        for store_id, country, city, _ in data.STORES
    ]


def simulate(
    out: Path,
    people: int = 2000,
    seed: int = 7,
    days: int = 7,
    start: date = date(2026, 11, 1),
    progress: Callable[[str], None] | None = None,
    noise: float = 1.0,
) -> SimulationSummary:
    """Write ``days`` days of landing files for ``people`` people under ``out``, and the truth.

    Existing files with the same names are overwritten; other files under ``out`` are left alone.
    ``noise`` scales every data-quality noise rate (0 gives clean data, 2 twice the noise).
    """
    if people < 1 or days < 1:
        raise ValueError("people and days must be at least 1")
    if noise < 0:
        raise ValueError("noise must not be negative")
    say = progress or (lambda _message: None)
    out = Path(out)
    dice = Dice(seed, noise)
    stores = new_stores(dice)
    landing = Landing(out, stores)
    world = World(dice, landing, start, stores, new_catalog(dice), Ids())
    builder = PopulationBuilder(dice, start, days, stores, world.ids)
    population = builder.build(people)
    say(f"population: {people} people, {builder.households} households of two or more")
    channels = Channels(
        PosChannel(world),
        WebChannel(world),
        AppChannel(world),
        CallCenterChannel(world),
        SocialChannel(world),
    )
    calendar = Calendar(world, days, channels.calls)
    calendar.plan_cases(population)
    calendar.plan_complaints(population)
    calendar.plan_failed_returns(population)
    for day in range(days):
        for person in population:
            channels.everyday(person, day)
        for item in calendar.planned(day):
            channels.carry_out(item, day)
        lines = landing.write_day(world.date_of(day))
        say(f"{world.date_of(day).isoformat()}: {lines} lines written (day {day + 1} of {days})")
    truth_path = landing.write_truth()
    say(f"truth: {len(landing.truth)} identity records")
    return SimulationSummary(
        out=out,
        truth_path=truth_path,
        seed=seed,
        days=days,
        people=people,
        identified_people=len(set(landing.truth.values())),
        households=builder.households,
        complaint_journeys=calendar.complaints,
        failed_return_journeys=calendar.failed_returns,
        sources=landing.counts,
    )
