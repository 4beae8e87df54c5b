"""The mobile app's events: devices, accounts, orders, push and support chat."""

from __future__ import annotations

from datetime import datetime

from jobs.simulate import data
from jobs.simulate.landing import day_file, json_row
from jobs.simulate.people import NEVER, AppAccount, Person
from jobs.simulate.rates import DAILY_ANON_APP, DAILY_APP
from jobs.simulate.world import World, iso, order_record, to_utc
from schemas.sources import APP


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
            self._emit(p, moment, device, "order", order=order_record(world, p, day, order_id))
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
