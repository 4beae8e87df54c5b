"""The CRM's call log."""

from __future__ import annotations

import math

from jobs.simulate import data
from jobs.simulate.dice import Weighted
from jobs.simulate.landing import day_file
from jobs.simulate.people import Person, heard_name
from jobs.simulate.phones import new_mobile
from jobs.simulate.world import World, iso, to_utc
from schemas.sources import CALL_CENTER


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
