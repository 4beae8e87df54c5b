"""The simulated population: people in households, with their channel accounts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from jobs.simulate import data
from jobs.simulate.dice import Dice, Ids, Weighted
from jobs.simulate.names import KR_FAMILY, KR_GIVEN, US_FIRST, US_LAST, plain_letters
from jobs.simulate.people import (
    NEVER,
    AppAccount,
    LoyaltyCard,
    Person,
    SocialAccount,
    WebAccount,
    case_noise,
    display_name,
    form_names,
    till_name,
)
from jobs.simulate.phones import new_landline, new_mobile, slip_digits, typed_phone
from jobs.simulate.places import KR, US, Address, Store, new_address
from jobs.simulate.rates import (
    MULTI_PERSON_HOUSEHOLD,
    SHARE_APP,
    SHARE_EMAIL_CHANGE,
    SHARE_LOYALTY,
    SHARE_PHONE_CHANGE,
    SHARE_SOCIAL,
    SHARE_WEB,
)

_HOUSEHOLD_SIZE = Weighted([(2, 0.55), (3, 0.30), (4, 0.15)])


class PopulationBuilder:
    """Creates people in households, with their channel accounts and their own ways of writing
    themselves, and keeps emails, handles and ids unique across people as real systems do."""

    def __init__(
        self, dice: Dice, start: date, days: int, stores: Sequence[Store], ids: Ids
    ) -> None:
        self.dice = dice
        self.start = start
        self.days = days
        self.stores = stores
        self.ids = ids
        self.emails: set[str] = set()
        self.handles: set[str] = set()
        self.households = 0
        self._kr_cities = Weighted([(c, v[0]) for c, v in data.KR_CITIES.items()])
        self._us_cities = Weighted([(c, v[0]) for c, v in data.US_CITIES.items()])
        self._domains = {c: Weighted(d) for c, d in data.EMAIL_DOMAINS.items()}
        self._platforms = {c: Weighted(p) for c, p in data.SOCIAL_PLATFORMS.items()}

    # households and people

    def build(self, count: int) -> list[Person]:
        people: list[Person] = []
        while len(people) < count:
            size = 1
            if self.dice.chance(MULTI_PERSON_HOUSEHOLD):
                size = _HOUSEHOLD_SIZE.draw(self.dice)
            people.extend(self._household(min(size, count - len(people)), len(people)))
        for person in people:
            self._enrol(person)
        return people

    def _household(self, size: int, first_index: int) -> list[Person]:
        dice = self.dice
        country = KR if dice.chance(0.5) else US
        city = (self._kr_cities if country == KR else self._us_cities).draw(dice)
        home = new_address(dice, country, city)
        head_age = dice.between(30, 75) if size > 1 else dice.between(19, 80)
        head = self._person(first_index, country, dice.pick("FM"), head_age, home, None)
        members = [head]
        for n in range(1, size):
            spouse = n == 1 and (size > 2 or dice.chance(0.7))
            if spouse:
                sex = "F" if head.sex == "M" else "M"
                age = max(19, head_age + dice.between(-6, 6))
                # Korean spouses keep their family name; most US spouses share it.
                shares_name = country == US and dice.chance(0.85)
            else:
                sex, age, shares_name = (
                    dice.pick("FM"),
                    max(16, head_age - dice.between(24, 36)),
                    True,
                )
            surname = head.last if shares_name else None
            members.append(self._person(first_index + n, country, sex, age, home, surname))
        if size > 1:
            self._share_phones(members)
        elif dice.chance(0.08):
            head.landline = new_landline(dice, country, city)
        return members

    def _share_phones(self, members: list[Person]) -> None:
        """Households often have a landline, and some members give the landline or another
        member's mobile instead of their own: distinct people, one phone number."""
        self.households += 1
        head = members[0]
        landline = (
            new_landline(self.dice, head.country, head.home.city) if self.dice.chance(0.5) else ""
        )
        for member in members:
            member.landline = landline
            member.household = [m for m in members if m is not member]
        for member in members[1:]:
            if self.dice.chance(0.35):
                member.shared_phone = (
                    landline if landline and self.dice.chance(0.5) else head.mobile
                )

    def _person(
        self, index: int, country: str, sex: str, age: int, home: Address, surname: str | None
    ) -> Person:
        dice = self.dice
        if country == KR:
            given = KR_GIVEN[sex].draw(dice)
            first, last = "".join(given).capitalize(), surname or KR_FAMILY.draw(dice)
        else:
            given = ()
            first, last = US_FIRST[sex].draw(dice), surname or US_LAST.draw(dice)
        born = self.start - timedelta(days=age * 365 + dice.between(0, 364))
        stores = [s for s in self.stores if s.country == country]
        local_stores = [s for s in stores if s.city == home.city] or stores
        person = Person(
            person_id=f"P{index + 1:06d}",
            country=country,
            sex=sex,
            first=first,
            last=last,
            given=given,
            dob=born,
            home=home,
            mobile=new_mobile(dice, country, home.city),
            email="",
            home_store=dice.pick(local_stores),
        )
        person.email = self.new_email(person)
        return person

    # identifiers people choose

    def new_email(self, p: Person) -> str:
        """A personal email, unique across people: mostly built from the name and birth year."""
        dice = self.dice
        first, last, yy = plain_letters(p.first), plain_letters(p.last), f"{p.dob.year % 100:02d}"
        if dice.chance(0.1):
            local = (
                f"{dice.pick(data.HANDLE_WORDS)}{dice.pick(data.HANDLE_NOUNS)}{dice.between(1, 99)}"
            )
        else:
            local = dice.pick(
                (
                    f"{first}.{last}",
                    f"{first}{last}{yy}",
                    f"{last}{first}",
                    f"{first[0]}{last}{yy}",
                    f"{first}_{last}",
                    f"{first}{dice.between(1, 999)}",
                )
            )
        return self._unique_email(local, self._domains[p.country].draw(dice))

    def _unique_email(self, local: str, domain: str) -> str:
        email = f"{local}@{domain}"
        while email in self.emails:
            email = f"{local}{self.dice.between(1, 9999)}@{domain}"
        self.emails.add(email)
        return email

    def _junk_login(self) -> str:
        """A throwaway login email; account systems still force it to be unique."""
        local, _, domain = self.dice.pick(data.JUNK_EMAILS).partition("@")
        return self._unique_email(local, domain)

    def _handle(self, p: Person) -> str:
        dice = self.dice
        first, last, yy = plain_letters(p.first), plain_letters(p.last), f"{p.dob.year % 100:02d}"
        if dice.noisy(0.2):
            base = f"{dice.pick(data.HANDLE_WORDS)}_{dice.pick(data.HANDLE_NOUNS)}"
        else:
            base = dice.pick(
                (
                    f"{first}.{last}{yy}",
                    f"{first}{last}",
                    f"{last}_{first}",
                    f"{first}_{last}{yy}",
                    f"the{first}{last}",
                    f"{first}{yy}",
                )
            )
        handle = base
        while handle in self.handles:
            handle = f"{base}{dice.between(1, 999)}"
        self.handles.add(handle)
        if dice.chance(0.15):
            return "".join(part.capitalize() for part in re.split(r"([._])", handle))
        return handle

    # channel accounts

    def _first_day(self) -> int:
        return self.dice.between(0, self.days - 1)

    def _enrol(self, p: Person) -> None:
        dice = self.dice
        if self.days > 1 and dice.chance(SHARE_PHONE_CHANGE):
            p.new_mobile = new_mobile(dice, p.country, p.home.city)
            p.phone_change_day = dice.between(1, self.days - 1)
        if dice.chance(SHARE_LOYALTY):
            p.card = self._card(p)
        if dice.chance(SHARE_WEB):
            p.web = self._web(p)
        if dice.chance(SHARE_APP):
            p.app = self._app(p)
        if dice.chance(SHARE_SOCIAL):
            p.social = self._social(p)

    def _card(self, p: Person) -> LoyaltyCard:
        dice = self.dice
        prefix = "9410" if p.country == KR else "9420"
        number = self.ids.fresh(lambda: prefix + dice.digits(12))
        if dice.noisy(0.01):
            phone = typed_phone(p.home_store.phone, dice)  # refused: cashier typed the store's
        elif dice.noisy(0.03):
            phone = ""
        else:
            given = p.landline if p.landline and dice.chance(0.1) else p.phone_on(0)
            phone = typed_phone(given, dice)
            if dice.noisy(0.015):
                phone = slip_digits(phone, dice)
        return LoyaltyCard(number, till_name(p, dice), phone, self._first_day())

    def _web(self, p: Person) -> WebAccount:
        dice = self.dice
        if dice.noisy(0.004):
            logins = [self._junk_login()]
        elif dice.chance(0.1):
            logins = [self.new_email(p)]  # a second address kept for shopping
        else:
            logins = [p.email]
        first_day = self._first_day()
        if self.days > 1 and dice.chance(SHARE_EMAIL_CHANGE):
            logins.append(self.new_email(p))
            p.email_change_day = dice.between(1, self.days - 1)
            first_day = dice.between(0, p.email_change_day - 1)
        cookies = [dice.uuid() for _ in range(dice.between(1, 2))]
        return WebAccount(logins, cookies, first_day, profile_pending=dice.chance(0.95))

    def _app(self, p: Person) -> AppAccount:
        dice = self.dice
        account_id = self.ids.fresh(lambda: "A" + dice.hex(12))
        devices = []
        for _ in range(2 if dice.chance(0.1) else 1):
            if dice.chance(0.5):
                devices.append((dice.uuid().upper(), "ios"))
            else:
                devices.append((dice.hex(16), "android"))
        first_day = self._first_day()
        new_signup = dice.chance(0.2)
        return AppAccount(
            account_id=account_id,
            devices=devices,
            push_opt_in="true" if dice.chance(0.55) else "false",
            traits=self._app_traits(p),
            first_day=first_day,
            signup_day=first_day if new_signup else NEVER,
            signed_up=not new_signup,
        )

    def _app_email(self, p: Person) -> str:
        """Most retailers' app and web share one account system, so the app usually knows the
        web login; otherwise people sign up with their usual or another address."""
        dice = self.dice
        if p.web and dice.chance(0.85):
            return p.web.logins[0]
        return p.email if dice.chance(0.8) else self.new_email(p)

    def _app_traits(self, p: Person) -> dict[str, str | None]:
        dice = self.dice
        if dice.noisy(0.005):
            email = "test@test.com"  # not an identity key in the app, so nothing forces it unique
        else:
            email = self._app_email(p)
            if dice.noisy(0.05):
                email = case_noise(email, dice)
        first, last = form_names(p, dice)
        phone = None if dice.noisy(0.15) else typed_phone(p.phone_on(0), dice)
        dob = None if dice.noisy(0.2) else p.dob.isoformat()
        return {"email": email, "first_name": first, "last_name": last, "phone": phone, "dob": dob}

    def _social(self, p: Person) -> SocialAccount:
        dice = self.dice
        return SocialAccount(
            platform=self._platforms[p.country].draw(dice),
            handle=self._handle(p),
            display_name=display_name(p, dice),
            first_day=self._first_day(),
            contact_pending=not self.dice.noisy(0.10),
        )
