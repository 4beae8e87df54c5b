"""One person, their channel accounts, and how each system writes their name and email."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from jobs.simulate import data
from jobs.simulate.dice import Dice
from jobs.simulate.names import KR_FAMILY_VARIANTS, kr_given_spelling, misspell_by_ear, typo
from jobs.simulate.places import KR, US, Address, Store

NEVER = 1 << 30  # a day index no simulation reaches


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
        variants = KR_FAMILY_VARIANTS.get(p.last, ())
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
