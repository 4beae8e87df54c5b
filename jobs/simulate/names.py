"""Name tables by weight and the noise of names: typos, spellings by ear, romanizations."""

from __future__ import annotations

import re

from jobs.simulate import data
from jobs.simulate.dice import Dice, Weighted

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
KR_FAMILY = Weighted([(name, share) for name, share, _ in data.KR_FAMILY_NAMES])
KR_FAMILY_VARIANTS = {name: variants for name, _, variants in data.KR_FAMILY_NAMES}
KR_GIVEN = {
    "F": Weighted.ranked([tuple(n.split("-")) for n in data.KR_GIVEN_FEMALE], 0.8),
    "M": Weighted.ranked([tuple(n.split("-")) for n in data.KR_GIVEN_MALE], 0.8),
}
US_FIRST = {
    "F": Weighted.ranked(data.US_FIRST_FEMALE, 0.7),
    "M": Weighted.ranked(data.US_FIRST_MALE, 0.7),
}
US_LAST = Weighted.ranked(data.US_LAST, 0.6)


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


def plain_letters(text: str) -> str:
    """Letters and digits only, lower-case: the way names end up in emails and handles."""
    return re.sub(r"[^a-z0-9]", "", text.lower())
