"""One simulation run: the population, then day by day every channel's files, then the truth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

from jobs.simulate import data
from jobs.simulate.app import AppChannel
from jobs.simulate.call_center import CallCenterChannel
from jobs.simulate.dice import Dice, Ids
from jobs.simulate.journeys import Calendar, Channels
from jobs.simulate.landing import Landing, SimulationSummary
from jobs.simulate.phones import new_landline
from jobs.simulate.places import Store, new_catalog
from jobs.simulate.population import PopulationBuilder
from jobs.simulate.pos import PosChannel
from jobs.simulate.social import SocialChannel
from jobs.simulate.web import WebChannel
from jobs.simulate.world import World


def new_stores(dice: Dice) -> list[Store]:
    return [
        Store(store_id, country, city, new_landline(dice, country, city))
        for store_id, country, city, _ in data.STORES
    ]


def simulate(
    out: Path,
    people: int = 2000,
    seed: int = 7,
    days: int = 7,
    start: date = date(2026, 11, 1),
    progress: Callable[[str], None] | None = None,
    noise: float = 1.0,
) -> SimulationSummary:
    """Write ``days`` days of landing files for ``people`` people under ``out``, and the truth.

    Existing files with the same names are overwritten; other files under ``out`` are left alone.
    ``noise`` scales every data-quality noise rate (0 gives clean data, 2 twice the noise).
    """
    if people < 1 or days < 1:
        raise ValueError("people and days must be at least 1")
    if noise < 0:
        raise ValueError("noise must not be negative")
    say = progress or (lambda _message: None)
    out = Path(out)
    dice = Dice(seed, noise)
    stores = new_stores(dice)
    landing = Landing(out, stores)
    world = World(dice, landing, start, stores, new_catalog(dice), Ids())
    builder = PopulationBuilder(dice, start, days, stores, world.ids)
    population = builder.build(people)
    say(f"population: {people} people, {builder.households} households of two or more")
    channels = Channels(
        PosChannel(world),
        WebChannel(world),
        AppChannel(world),
        CallCenterChannel(world),
        SocialChannel(world),
    )
    calendar = Calendar(world, days, channels.calls)
    calendar.plan_cases(population)
    calendar.plan_complaints(population)
    calendar.plan_failed_returns(population)
    for day in range(days):
        for person in population:
            channels.everyday(person, day)
        for item in calendar.planned(day):
            channels.carry_out(item, day)
        lines = landing.write_day(world.date_of(day))
        say(f"{world.date_of(day).isoformat()}: {lines} lines written (day {day + 1} of {days})")
    truth_path = landing.write_truth()
    say(f"truth: {len(landing.truth)} identity records")
    return SimulationSummary(
        out=out,
        truth_path=truth_path,
        seed=seed,
        days=days,
        people=people,
        identified_people=len(set(landing.truth.values())),
        households=builder.households,
        complaint_journeys=calendar.complaints,
        failed_return_journeys=calendar.failed_returns,
        sources=landing.counts,
    )
