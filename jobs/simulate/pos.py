"""Store tills: baskets, with the loyalty card's name and phone as the till has them."""

from __future__ import annotations

from jobs.simulate.landing import day_file
from jobs.simulate.people import LoyaltyCard, Person, till_name
from jobs.simulate.phones import typed_phone
from jobs.simulate.places import CURRENCY, basket_total, money, new_basket
from jobs.simulate.rates import DAILY_ANON_POS, DAILY_POS
from jobs.simulate.world import World, to_utc
from schemas.sources import POS


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
