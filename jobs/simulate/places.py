"""Countries, home addresses as each system writes them, stores, products and baskets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from jobs.simulate import data
from jobs.simulate.dice import Dice, Weighted

KR, US = "KR", "US"
UTC_OFFSET = {KR: timedelta(hours=9), US: timedelta(hours=-5)}
OFFSET_TEXT = {KR: "+09:00", US: "-05:00"}
CURRENCY = {KR: "KRW", US: "USD"}


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
