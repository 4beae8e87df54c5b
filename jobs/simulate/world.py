"""What every channel simulator shares, and the online orders the web and the app take."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from jobs.simulate.dice import Dice, Ids
from jobs.simulate.landing import Landing
from jobs.simulate.people import Person, ship_to_name
from jobs.simulate.phones import typed_phone
from jobs.simulate.places import (
    CURRENCY,
    OFFSET_TEXT,
    UTC_OFFSET,
    LineItem,
    Product,
    Store,
    basket_total,
    money,
    new_basket,
    render_address,
)


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


def order_record(world: World, p: Person, day: int, order_id: str) -> dict[str, object]:
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


def browse_page(world: World) -> str:
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
