"""Valid phone numbers of Korea and the US, and the ways people type them."""

from __future__ import annotations

import itertools

import phonenumbers

from jobs.simulate import data
from jobs.simulate.dice import Dice, Weighted
from jobs.simulate.places import KR


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
