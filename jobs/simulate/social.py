"""Social DMs between customers and the brand."""

from __future__ import annotations

from datetime import datetime

from jobs.simulate import data
from jobs.simulate.dice import Weighted
from jobs.simulate.landing import day_file, json_row
from jobs.simulate.people import Person, case_noise
from jobs.simulate.phones import typed_phone
from jobs.simulate.places import KR
from jobs.simulate.rates import DAILY_SOCIAL
from jobs.simulate.world import World, iso, to_utc
from schemas.sources import SOCIAL


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
