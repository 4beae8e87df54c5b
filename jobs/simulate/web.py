"""The web shop's clickstream and account events."""

from __future__ import annotations

from datetime import datetime

from jobs.simulate import data
from jobs.simulate.landing import day_file, json_row
from jobs.simulate.people import Person, case_noise, form_names
from jobs.simulate.phones import slip_digits, typed_phone
from jobs.simulate.places import render_address
from jobs.simulate.rates import DAILY_ANON_WEB, DAILY_WEB
from jobs.simulate.world import World, browse_page, iso, order_record, to_utc
from schemas.sources import WEB


class WebChannel:
    """Clickstream and account events: anonymous browsing by cookie, logins that tie a cookie to
    an email, profile and consent updates, orders and returns."""

    def __init__(self, world: World) -> None:
        self.world = world

    def day(self, p: Person, day: int) -> None:
        dice = self.world.dice
        web = p.web
        if web:
            if day in (web.first_day, p.email_change_day) or dice.chance(DAILY_WEB):
                self.session(p, day)
            elif dice.chance(DAILY_ANON_WEB):
                self.browse(p, day)  # visits without logging in
        elif dice.chance(DAILY_ANON_WEB):
            self.browse(p, day)

    def _emit(
        self,
        p: Person,
        moment: datetime,
        cookie: str,
        login: str | None,
        event: str,
        page: str,
        **nested: object,
    ) -> None:
        world = self.world
        row = json_row(
            WEB,
            event_id=world.dice.uuid(),
            ts=iso(moment, p.country),
            cookie_id=cookie,
            login_email=login,
            site_country=p.country,
            event_type=event,
            page=page,
            **nested,
        )
        name = day_file(WEB.name, moment.date())
        world.landing.add(WEB.name, name, to_utc(moment, p.country), row, p if login else None)

    def browse(self, p: Person, day: int) -> None:
        """Anonymous page views: a cookie and nothing else."""
        world = self.world
        if not p.anonymous_cookie:
            p.anonymous_cookie = world.dice.uuid()
        moment = world.local_time(day, (7, 24))
        for _ in range(world.dice.between(1, 4)):
            self._emit(p, moment, p.anonymous_cookie, None, "page_view", browse_page(world))
            moment = world.later(moment)

    def session(
        self,
        p: Person,
        day: int,
        *,
        failed_return: bool = False,
        case_id: str = "",
        hours: tuple[int, int] = (7, 23),
    ) -> None:
        """A visit: some anonymous pages, a login, then what the customer came to do."""
        world, dice = self.world, self.world.dice
        web = p.web
        assert web is not None
        cookie = dice.pick(web.cookies)
        moment = world.local_time(day, hours)
        for _ in range(dice.between(0, 3)):
            self._emit(p, moment, cookie, None, "page_view", browse_page(world))
            moment = world.later(moment)
        login = self._typed_login(p.login_on(day))
        self._emit(p, moment, cookie, login, "login", "/login")
        for _ in range(dice.between(1, 5)):
            moment = world.later(moment)
            self._emit(p, moment, cookie, login, "page_view", browse_page(world))

        def emit(event: str, page: str, **nested: object) -> None:
            nonlocal moment
            moment = world.later(moment, 20, 300)
            self._emit(p, moment, cookie, login, event, page, **nested)

        if web.profile_pending or day == p.email_change_day or dice.chance(0.04):
            web.profile_pending = False
            emit("profile_update", "/account/profile", profile=self._profile(p, day))
        if (day == web.first_day and dice.chance(0.25)) or dice.chance(0.04):
            emit("consent_update", "/account/preferences", consent=self._consent())
        if dice.chance(0.15):
            emit("order", "/checkout", order=order_record(world, p, day, self._order_id()))
        if failed_return:
            emit("page_view", "/account/orders")
            emit("return_request", "/returns", return_request=self._return(failed=True))
            emit("page_view", "/help/returns")
        elif dice.chance(0.02):
            emit("return_request", "/returns", return_request=self._return(failed=False))
        if case_id:
            emit("page_view", f"/help/cases/{case_id}")

    def _typed_login(self, email: str) -> str:
        dice = self.world.dice
        if dice.noisy(0.08):
            email = case_noise(email, dice)
        if dice.noisy(0.01):
            email = f" {email} "
        return email

    def _order_id(self) -> str:
        dice = self.world.dice
        return self.world.ids.fresh(lambda: "W" + dice.digits(9))

    def _profile(self, p: Person, day: int) -> dict[str, str | None]:
        dice = self.world.dice
        first, last = form_names(p, dice)
        address, postcode, city = render_address(p.home, dice)
        dob = p.dob.isoformat()
        if dice.noisy(0.005):
            dob = "1970-01-01"  # the form's default, never changed
        elif dice.noisy(0.01):
            dob = p.dob.replace(year=p.dob.year + dice.pick((-1, 1))).isoformat()
        phone = typed_phone(p.phone_on(day), dice)
        if dice.noisy(0.01):
            phone = slip_digits(phone, dice)
        return {
            "first_name": first,
            "last_name": last,
            "dob": None if dice.noisy(0.1) else dob,
            "phone": None if dice.noisy(0.08) else phone,
            "address": address,
            "postcode": postcode,
            "city": city,
        }

    def _consent(self) -> dict[str, str]:
        return {
            "email_opt_in": self._flag(0.6),
            "sms_opt_in": self._flag(0.35),
            "ads_opt_in": self._flag(0.45),
        }

    def _flag(self, p: float) -> str:
        return "true" if self.world.dice.chance(p) else "false"

    def _return(self, *, failed: bool) -> dict[str, str | None]:
        dice = self.world.dice
        return {
            "order_id": self._order_id(),  # an earlier order, often from before the period
            "status": "failed" if failed else dice.pick(("submitted", "approved")),
            "reason": dice.pick(data.RETURN_REASONS),
            "error": dice.pick(data.RETURN_ERRORS) if failed else None,
        }
