"""Calls and cross-channel journeys planned ahead, then carried out on their days."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from jobs.simulate.app import AppChannel
from jobs.simulate.call_center import CallCenterChannel
from jobs.simulate.dice import Weighted
from jobs.simulate.people import NEVER, Person
from jobs.simulate.pos import PosChannel
from jobs.simulate.rates import SHARE_CALLS, SHARE_COMPLAINT_JOURNEY, SHARE_FAILED_RETURN
from jobs.simulate.social import SocialChannel
from jobs.simulate.web import WebChannel
from jobs.simulate.world import World


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
