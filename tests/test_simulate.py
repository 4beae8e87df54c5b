"""The simulator writes files exactly as the landing contracts say, with a truth that matches them.

These tests read the files the way the pipeline will (csv headers, JSON lines) and check what
identity resolution relies on: every identity key is in the truth and nothing else is, the
planted journeys and households are there, and no person id leaks into a source file.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import phonenumbers
import pytest

from jobs.simulate import SimulationSummary, simulate
from schemas.sources import SOURCES, Layout, normalize_source_key

DAYS = 5
START = date(2026, 11, 1)


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationSummary]:
    out = tmp_path_factory.mktemp("landing")
    return out, simulate(out, people=1000, seed=11, days=DAYS, start=START)


@pytest.fixture(scope="module")
def out(landing: tuple[Path, SimulationSummary]) -> Path:
    return landing[0]


@pytest.fixture(scope="module")
def truth(out: Path) -> dict[tuple[str, str], str]:
    with (out / "_truth" / "identity_truth.csv").open(encoding="utf-8") as handle:
        return {(r["source"], r["source_key"]): r["person_id"] for r in csv.DictReader(handle)}


def source_files(out: Path, source: str) -> list[Path]:
    return sorted((out / source).glob("*/*"))


def rows(out: Path, source: str) -> Iterator[dict]:
    """Every row of a source, parsed the way ingestion parses it."""
    for path in source_files(out, source):
        with path.open(encoding="utf-8", newline="") as handle:
            if SOURCES[source].file_format == "csv":
                yield from csv.DictReader(handle)
            else:
                for line in handle:
                    yield json.loads(line)


def identity_of(source: str, row: dict) -> tuple[str, str] | None:
    raw = row.get(SOURCES[source].identity_key)
    return (source, normalize_source_key(source, raw)) if raw else None


def e164(raw: str | None, region: str) -> str | None:
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    def snapshot(folder: Path, seed: int) -> dict[str, bytes]:
        simulate(folder, people=150, seed=seed, days=3)
        return {
            str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
        }

    first = snapshot(tmp_path / "a", 3)
    assert first == snapshot(tmp_path / "b", 3)
    other = snapshot(tmp_path / "c", 4)
    assert other.keys() == first.keys()
    assert other != first


def test_one_folder_per_source_and_day_with_a_file_per_store_for_pos(out: Path) -> None:
    days = [(START + timedelta(days=n)).isoformat() for n in range(DAYS)]
    for source in SOURCES:
        assert sorted(p.name for p in (out / source).iterdir()) == days
    pos_files = source_files(out, "pos")
    assert len(pos_files) == 12 * DAYS
    assert re.fullmatch(r"pos_S\d\d_\d{8}\.csv", pos_files[0].name)
    for source in ("web", "app", "call_center", "social"):
        suffixes = {p.suffix for p in source_files(out, source)}
        assert suffixes == {f".{SOURCES[source].file_format}"}


def test_csv_files_have_exactly_the_spec_columns_and_no_line_breaks_in_fields(out: Path) -> None:
    for source in ("pos", "call_center"):
        spec = SOURCES[source]
        for path in source_files(out, source):
            with path.open(encoding="utf-8", newline="") as handle:
                reader = csv.DictReader(handle)
                assert reader.fieldnames == spec.columns
                for row in reader:
                    assert None not in row  # no extra fields
                    assert not any("\n" in v or "\r" in v for v in row.values())


def keys_outside(layout: Layout, record: dict, where: str = "") -> list[str]:
    """Keys of ``record`` not in ``layout``, and leaves that are not strings or null."""
    problems = []
    for key, value in record.items():
        if key not in layout:
            problems.append(f"{where}{key}")
            continue
        kind = layout[key]
        if kind is None:
            if value is not None and not isinstance(value, str):
                problems.append(f"{where}{key}: {type(value).__name__} leaf")
        elif isinstance(kind, list):
            for item in value:
                problems.extend(keys_outside(kind[0], item, f"{where}{key}[]."))
        else:
            problems.extend(keys_outside(kind, value, f"{where}{key}."))
    return problems


def test_json_lines_use_only_layout_keys_with_string_leaves(out: Path) -> None:
    for source in ("web", "app", "social"):
        layout = SOURCES[source].layout
        for row in rows(out, source):
            assert keys_outside(layout, row) == []


def test_required_fields_are_present_and_typed_fields_cast(out: Path) -> None:
    offsets = {"KR": "+09:00", "US": "-05:00"}
    for source, spec in SOURCES.items():
        country_field = {"pos": "store_country", "web": "site_country", "app": "app_country"}.get(
            source, "center_country"
        )
        for row in rows(out, source):
            assert all(row.get(name) for name in spec.required), (source, row)
            if source == "pos":
                datetime.strptime(row["ts"], "%Y-%m-%d %H:%M:%S")
                assert Decimal(row["amount"]).as_tuple().exponent == -2
                assert row["currency"] == {"KR": "KRW", "US": "USD"}[row["store_country"]]
                continue
            ts = row.get("ts") or row["ts_start"]
            datetime.fromisoformat(ts)
            if source == "social":
                assert ts[-6:] in offsets.values()
            else:
                assert ts.endswith(offsets[row[country_field]])
            if source == "call_center":
                int(row["handle_time_s"])
                assert {row["transferred"], row["escalated"]} <= {"true", "false"}
            if source == "social" and row["sentiment"] is not None:
                assert -1 <= float(row["sentiment"]) <= 1
            if source == "app" and row["push_opt_in"] is not None:
                assert row["push_opt_in"] in ("true", "false")
            order = row.get("order")
            if order:
                total = sum(Decimal(i["unit_price"]) * int(i["qty"]) for i in order["items"])
                assert Decimal(order["amount"]) == total


def test_truth_has_exactly_the_identity_keys_found_in_the_files(
    out: Path, truth: dict[tuple[str, str], str], landing: tuple[Path, SimulationSummary]
) -> None:
    found = {
        key for source in SOURCES for row in rows(out, source) if (key := identity_of(source, row))
    }
    assert found == set(truth)
    summary = landing[1]
    for source, counts in summary.sources.items():
        assert counts.records == sum(1 for s, _ in truth if s == source)
        assert counts.lines == sum(1 for _ in rows(out, source))
    assert summary.identified_people == len(set(truth.values()))


def test_every_channel_has_identity_records_and_anonymous_activity(
    out: Path, truth: dict[tuple[str, str], str]
) -> None:
    for source in SOURCES:
        assert sum(1 for s, _ in truth if s == source) > 50, source
    assert any(not row["loyalty_card"] for row in rows(out, "pos"))
    assert any(row["login_email"] is None for row in rows(out, "web"))
    assert any(row["account_id"] is None for row in rows(out, "app"))


def test_some_people_have_two_web_logins(truth: dict[tuple[str, str], str]) -> None:
    logins = defaultdict(int)
    for (source, _), person in truth.items():
        if source == "web":
            logins[person] += 1
    assert any(count >= 2 for count in logins.values())


def test_household_members_are_distinct_people_sharing_a_phone_and_an_address(
    out: Path, truth: dict[tuple[str, str], str]
) -> None:
    phones: dict[str, set[str]] = defaultdict(set)  # E.164 -> persons
    postcodes: dict[str, set[str]] = defaultdict(set)  # person -> postcodes
    for row in rows(out, "web"):
        if not row["login_email"]:
            continue
        person = truth[identity_of("web", row)]
        order = row.get("order") or {}
        for part in (row.get("profile"), order.get("ship_to")):
            if part:
                if phone := e164(part["phone"], row["site_country"]):
                    phones[phone].add(person)
                postcodes[person].add(part["postcode"][:5])
    for row in rows(out, "call_center"):
        if phone := e164(row["caller_number"], row["center_country"]):
            phones[phone].add(truth[identity_of("call_center", row)])
    shared = [
        people
        for people in phones.values()
        if len(people) > 1 and set.intersection(*(postcodes[p] for p in people))
    ]
    assert shared, "no distinct people share a phone and a postcode"


def test_complaint_journey_keeps_one_case_id_from_social_through_app_chat_to_the_call(
    out: Path, truth: dict[tuple[str, str], str]
) -> None:
    social_cases = {
        row["case_id"]: truth[identity_of("social", row)]
        for row in rows(out, "social")
        if row["case_id"]
    }
    call_cases = {
        row["case_id"]: truth[identity_of("call_center", row)]
        for row in rows(out, "call_center")
        if row["reason"] == "complaint"
    }
    chat_cases = {
        row["chat"]["case_id"]: truth[identity_of("app", row)]
        for row in rows(out, "app")
        if row.get("chat")
    }
    journeys = [case for case in social_cases if call_cases.get(case) == social_cases[case]]
    assert journeys
    assert any(chat_cases.get(case) == social_cases[case] for case in journeys)
    assert all(case in call_cases for case in social_cases)


def test_failed_web_return_is_followed_by_a_return_call_from_the_same_person(
    out: Path, truth: dict[tuple[str, str], str]
) -> None:
    calls = defaultdict(list)
    for row in rows(out, "call_center"):
        if row["reason"] == "return":
            person = truth[identity_of("call_center", row)]
            calls[person].append(datetime.fromisoformat(row["ts_start"]))
    failed = [
        row
        for row in rows(out, "web")
        if (row.get("return_request") or {}).get("status") == "failed"
    ]
    assert any(row["return_request"]["error"] == "return window check failed" for row in failed)
    followed = 0
    for row in failed:
        failed_at = datetime.fromisoformat(row["ts"])
        person = truth[identity_of("web", row)]
        followed += any(
            failed_at < call and (call.date() - failed_at.date()).days <= 2
            for call in calls[person]
        )
    assert followed == len(failed)


def test_phone_numbers_are_mostly_valid(out: Path) -> None:
    given = [(row["phone"], row["store_country"]) for row in rows(out, "pos") if row["phone"]]
    given += [
        (row["caller_number"], row["center_country"])
        for row in rows(out, "call_center")
        if row["caller_number"]
    ]
    for row in rows(out, "web"):
        if row.get("profile") and row["profile"]["phone"]:
            given.append((row["profile"]["phone"], row["site_country"]))
    for row in rows(out, "app"):
        if row.get("account") and row["account"]["phone"]:
            given.append((row["account"]["phone"], row["app_country"]))
    valid = sum(1 for raw, region in given if e164(raw, region))
    assert len(given) > 1000
    assert valid / len(given) > 0.97


def test_no_person_id_appears_in_any_source_file(
    out: Path, truth: dict[tuple[str, str], str]
) -> None:
    person_ids = set(truth.values())
    pattern = re.compile(r"P\d{6}")
    for source in SOURCES:
        for path in source_files(out, source):
            assert not person_ids & set(pattern.findall(path.read_text(encoding="utf-8")))


def test_social_messages_often_carry_an_email_or_phone(out: Path) -> None:
    contact = re.compile(r"@[\w-]+\.\w|\d{3}[ .)-]*\d{3,4}[ .-]?\d{4}")
    handles_with_contact, handles = set(), set()
    for row in rows(out, "social"):
        handle = identity_of("social", row)
        handles.add(handle)
        if row["direction"] == "inbound" and contact.search(row["text"]):
            handles_with_contact.add(handle)
    assert 0.6 < len(handles_with_contact) / len(handles) < 0.9


def test_progress_reports_counts_without_personal_data(tmp_path: Path) -> None:
    messages: list[str] = []
    simulate(tmp_path, people=50, days=2, progress=messages.append)
    assert len(messages) == 4
    assert not any("@" in m or re.search(r"\d{7,}", m) for m in messages)


def test_noise_zero_gives_clean_identifiers(tmp_path: Path) -> None:
    simulate(tmp_path, people=200, days=3, noise=0)
    logins = [row["login_email"] for row in rows(tmp_path, "web") if row["login_email"]]
    assert all(login == login.strip().lower() for login in logins)
    names = [row["customer_name"] for row in rows(tmp_path, "pos") if row["loyalty_card"]]
    assert all(names)


def test_rejects_impossible_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        simulate(tmp_path, people=0)
    with pytest.raises(ValueError):
        simulate(tmp_path, people=10, noise=-1)
