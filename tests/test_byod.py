"""`omnicdp identity resolve --input`: a customer table that is not the simulator's, resolved.

The table is generated here, in formats the pipeline's sources never use: column names with
spaces, dates as YYYY-MM-DD, YYYYMMDD and DD/MM/YYYY, US phone numbers typed without a country
code, house number and street in one field, empty strings for missing values, and a full name
column on rows that lack first and last name. 130 people: most have several rows (typos, a
nickname, another email or phone, fields left empty), and the hard cases are there on purpose:
households sharing surname, address and home phone, and namesakes with different dates of
birth. One model is trained per module (the slow part) and reused through ``--model``.
"""

from __future__ import annotations

import io
import random
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import combinations
from pathlib import Path

import pandas as pd
import phonenumbers
import pytest
from pyspark.sql import SparkSession

from identity.byod import imported_records
from jobs.cli import main

SEED = 20260601
PEOPLE = 130
HOUSEHOLDS = 12  # two people each, sharing surname, address and home phone
NAMESAKES = 6  # pairs with the same full name, nothing else in common


def _words(text: str) -> list[str]:
    return text.split()


FIRST = _words(
    "james mary robert patricia john jennifer michael linda william elizabeth david barbara "
    "richard susan joseph jessica thomas sarah charles karen daniel nancy matthew lisa "
    "anthony betty mark margaret steven sandra paul ashley andrew kimberly joshua emily "
    "kenneth donna kevin michelle brian carol george amanda timothy melissa ronald deborah "
    "jason stephanie edward rebecca jeffrey sharon ryan laura jacob cynthia gary kathleen "
    "nicholas amy eric angela jonathan shirley stephen anna larry brenda justin pamela scott "
    "emma brandon nicole"
)
LAST = _words(
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez "
    "lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson "
    "white harris sanchez clark ramirez lewis robinson walker young allen king wright scott "
    "torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter "
    "roberts gomez phillips evans turner diaz parker cruz edwards collins reyes stewart "
    "morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed "
    "kelly howard ramos kim cox ward richardson watson brooks chavez wood james bennett gray "
    "mendoza ruiz hughes price"
)
NICKNAMES = {"robert": "bob", "william": "bill", "james": "jim", "elizabeth": "liz"}
STREETS = ("Main Street", "Oak Avenue", "Maple Road", "Cedar Lane", "Park Drive", "Elm Street")
CITIES = {"Springfield": "62704", "Riverside": "92501", "Fairview": "37062", "Madison": "53703"}
AREA_CODES = ("217", "951", "615", "608", "312", "415")
COLUMNS = {
    "first_name": "First Name",
    "last_name": "Surname",
    "full_name": "Name",
    "dob": "Birth Date",
    "email": "E-mail",
    "phone": "Mobile",
    "address": "Street Address",
    "postcode": "Zip",
    "city": "Town",
    "loyalty_id": "Card",
}
ID = "Row ID"


@dataclass
class Person:
    """One true person and the identifiers their rows are drawn from."""

    key: int
    first: str
    last: str
    dob: date
    emails: list[str]
    phones: list[str]
    street: str
    city: str
    card: str | None = None
    rows: list[dict[str, str]] = field(default_factory=list)


def _phone(rng: random.Random) -> str:
    """A valid US number in E.164 (the area codes are real, exchanges not N11 or 555)."""
    while True:
        exchange = rng.randint(200, 999)
        number = f"+1{rng.choice(AREA_CODES)}{exchange}{rng.randint(0, 9999):04d}"
        real = exchange % 100 != 11 and exchange != 555
        if real and phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


def _typed_phone(e164: str, rng: random.Random) -> str:
    """As people type a US number: with or without +1, dashes, brackets, dots or nothing."""
    d = e164[2:]
    return rng.choice(
        [
            f"+1 {d[:3]}-{d[3:6]}-{d[6:]}",
            f"({d[:3]}) {d[3:6]}-{d[6:]}",
            f"{d[:3]}.{d[3:6]}.{d[6:]}",
            d,
            f"1-{d[:3]}-{d[3:6]}-{d[6:]}",
        ]
    )


def _typed_dob(dob: date, rng: random.Random) -> str:
    return rng.choice([dob.isoformat(), dob.strftime("%Y%m%d"), dob.strftime("%d/%m/%Y")])


def _typo(word: str, rng: random.Random) -> str:
    """Two neighbouring letters swapped (not the first: people rarely get that wrong)."""
    if len(word) < 4:
        return word
    i = rng.randint(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _street(rng: random.Random) -> str:
    return f"{rng.randint(1, 999)} {rng.choice(STREETS)}"


def _people(rng: random.Random) -> list[Person]:
    """Distinct people, then households (same surname, address, home phone) and namesakes."""
    used: set[tuple[str, str]] = set()
    people: list[Person] = []

    def new_person(first: str, last: str, **kw: object) -> Person:
        dob = date(1950, 1, 1) + timedelta(days=rng.randint(0, 365 * 55))
        defaults = {
            "emails": [f"{first}.{last}{rng.randint(1, 99)}@example.com"],
            "phones": [_phone(rng)],
            "street": _street(rng),
            "city": rng.choice(list(CITIES)),
        }
        p = Person(len(people), first, last, dob, **{**defaults, **kw})  # type: ignore[arg-type]
        people.append(p)
        return p

    while len(people) < PEOPLE - 2 * HOUSEHOLDS - 2 * NAMESAKES:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if (first, last) not in used:
            used.add((first, last))
            new_person(first, last)
    for _ in range(HOUSEHOLDS):
        last, home, street, city = (
            rng.choice(LAST),
            _phone(rng),
            _street(rng),
            rng.choice(list(CITIES)),
        )
        for first in rng.sample(FIRST, 2):
            new_person(first, last, phones=[home], street=street, city=city)
    for _ in range(NAMESAKES):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        for _ in range(2):
            new_person(first, last)
    for p in people:
        if rng.random() < 0.3:
            p.card = f"LC{rng.randint(10**7, 10**8 - 1)}"
        if rng.random() < 0.3:
            p.emails.append(f"{p.first[0]}{p.last}{rng.randint(100, 999)}@mail.example.org")
    return people


def _row(p: Person, rng: random.Random, n: int) -> dict[str, str]:
    """One row of ``p``: the first is clean and complete, later ones vary as real rows do."""
    messy = n > 0
    first, last = p.first, p.last
    if messy and rng.random() < 0.2:
        first = _typo(first, rng) if rng.random() < 0.5 else NICKNAMES.get(first, first)
    if messy and rng.random() < 0.15:
        last = _typo(last, rng)
    row = dict.fromkeys([ID, *COLUMNS.values()], "")
    if messy and rng.random() < 0.4:
        row["Name"] = f"{first} {last}".title()
    else:
        row["First Name"], row["Surname"] = first.title(), last.title()
    keep = lambda share: not messy or rng.random() < share  # noqa: E731
    if keep(0.7):
        row["Birth Date"] = _typed_dob(p.dob, rng)
    if keep(0.6):
        row["E-mail"] = rng.choice(p.emails).upper() if rng.random() < 0.1 else rng.choice(p.emails)
    if keep(0.7):
        row["Mobile"] = _typed_phone(rng.choice(p.phones), rng)
    if keep(0.5):
        street = p.street.replace("Street", "St.") if rng.random() < 0.5 else p.street
        row["Street Address"], row["Zip"], row["Town"] = street, CITIES[p.city], p.city
    if p.card and keep(0.5):
        row["Card"] = p.card
    return row


def generate(seed: int = SEED) -> tuple[pd.DataFrame, dict[str, int]]:
    """The table (all values text, "" for missing) and each row id's true person."""
    rng = random.Random(seed)
    rows, truth = [], {}
    for p in _people(rng):
        for n in range(rng.choice((1, 2, 2, 3, 3, 4))):
            row = _row(p, rng, n)
            row[ID] = f"R{len(rows) + 1:05d}"
            truth[row[ID]] = p.key
            rows.append(row)
    order = rng.sample(range(len(rows)), len(rows))  # duplicates are not neighbours
    return pd.DataFrame([rows[i] for i in order]), truth


def test_other_formats_are_standardized_as_silver_is(spark: SparkSession) -> None:
    """Dates in each accepted format, national and international phones, an address in one
    field, a "Family, Given" name, and empty strings as missing."""
    table = spark.createDataFrame(
        [
            ("1", "Anna Schmidt", "1985-03-14", " Anna.S@Example.COM ", "(415) 376-6090",
             "12 Main Street", "62704"),
            ("2", " ", "19850314", "", "+1 415 376 6090", "12 main st.", ""),
            ("3", "Mrs Schmidt", "14/03/1985", "not an email", "", "", "  "),
            ("4", "Schmidt, Anna Maria", "", "", "", "", ""),
        ],
        "id string, name string, born string, mail string, tel string, street string, zip string",
    )  # fmt: skip
    mapping = {"full_name": "name", "dob": "born", "email": "mail", "phone": "tel"}
    mapping |= {"address": "street", "postcode": "zip"}
    got = {r.record_id: r for r in imported_records(table, "id", mapping, "US").collect()}
    assert [got[k].dob for k in "1234"] == [date(1985, 3, 14)] * 3 + [None]
    assert [got[k].full_name for k in "1234"] == [
        "anna schmidt",
        None,
        "mrs schmidt",
        "anna maria schmidt",
    ]
    assert [got[k].email for k in "123"] == ["anna.s@example.com", None, None]
    assert [got[k].phone for k in "123"] == ["+14153766090", "+14153766090", None]
    assert got["1"].address_line == got["2"].address_line == "12 main st"
    assert [got[k].postcode for k in "123"] == ["62704", None, None]
    assert {(r.source, r.country, r.first_name, r.city) for r in got.values()} == {
        ("imported", "US", None, None)
    }


# --- running the command ----------------------------------------------------------------------

MAPS = [f"{field}={column}" for field, column in COLUMNS.items()]


@dataclass(frozen=True)
class Run:
    """One ``omnicdp identity resolve --input`` invocation and what it printed."""

    code: int
    stdout: str
    stderr: str


def resolve(lakehouse: Path, *args: str) -> Run:
    """Run the command in-process, as a user would from the shell."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["--lakehouse", str(lakehouse), "identity", "resolve", *args])
    return Run(code, out.getvalue(), err.getvalue())


def resolve_csv(lakehouse: Path, table: Path, output: Path, *extra: str) -> Run:
    return resolve(
        lakehouse,
        *("--input", str(table), "--id-column", ID, "--map", *MAPS),
        *("--output", str(output), "--phone-region", "US", *extra),
    )


def customer_ids(output: Path) -> dict[str, str]:
    ids = pd.read_parquet(output)
    assert list(ids.columns) == [ID, "customer_id"]
    return dict(zip(ids[ID], ids["customer_id"], strict=True))


def pairwise(ids: dict[str, str], truth: dict[str, int]) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of ``ids`` against the true people."""
    tp = fp = fn = 0
    for a, b in combinations(sorted(truth), 2):
        same_person, same_id = truth[a] == truth[b], ids[a] == ids[b]
        tp += same_person and same_id
        fp += same_id and not same_person
        fn += same_person and not same_id
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return precision, recall, 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class FirstRun:
    table: Path
    output: Path
    rows: pd.DataFrame
    truth: dict[str, int]
    run: Run


@pytest.fixture(scope="module")
def first_run(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """The generated table resolved once, training a model (the slow part of this module)."""
    root = tmp_path_factory.mktemp("byod")
    rows, truth = generate()
    table = root / "customers.csv"
    rows.to_csv(table, index=False)
    output = root / "customer_ids.parquet"
    run = resolve_csv(root / "lakehouse", table, output)
    assert run.code == 0, run.stderr
    return FirstRun(table, output, rows, truth, run)


def test_one_customer_id_per_input_row(first_run: FirstRun) -> None:
    ids = customer_ids(first_run.output)
    assert sorted(ids) == sorted(first_run.rows[ID])
    assert all(ids.values())
    assert len(set(ids.values())) < len(ids)  # duplicates were found at all


def test_duplicates_share_ids_and_different_people_do_not(first_run: FirstRun) -> None:
    ids, truth = customer_ids(first_run.output), first_run.truth
    precision, recall, f1 = pairwise(ids, truth)
    # Measured on this table: precision 1.0, recall 0.993, F1 0.996.
    assert precision >= 0.99 and recall >= 0.97 and f1 >= 0.98, (precision, recall, f1)
    people = {}
    for row_id, person in truth.items():
        people.setdefault(person, set()).add(ids[row_id])
    household_or_namesake = range(PEOPLE - 2 * HOUSEHOLDS - 2 * NAMESAKES, PEOPLE, 2)
    for a in household_or_namesake:  # two people each, numbered a and a + 1
        assert not people[a] & people[a + 1], a


def test_progress_is_shown_and_the_model_is_written_next_to_the_output(
    first_run: FirstRun,
) -> None:
    for step in ("rows; fields", "training on", "model trained", "scoring", "customer ids"):
        assert step in first_run.run.stderr, step
    model = first_run.output.with_suffix(".model.json")
    assert '"splink_settings"' in model.read_text()
    assert f"trained, saved to {model}" in first_run.run.stdout


def test_pii_stays_out_of_the_console(first_run: FirstRun) -> None:
    printed = first_run.run.stdout + first_run.run.stderr
    for column in ("E-mail", "Mobile", "Street Address"):
        values = [v for v in first_run.rows[column] if v]
        assert not [v for v in values if v in printed], column


def test_a_second_run_keeps_ids_and_reuses_the_model(first_run: FirstRun) -> None:
    """Rows added: copies of existing rows (under new ids) and new people. Through
    ``--previous`` every old row keeps its id and a copy takes its original's; ``--model``
    skips training."""
    rows = first_run.rows
    copies = rows.sample(4, random_state=1).assign(**{ID: lambda d: d[ID] + "-again"})
    strangers = pd.DataFrame(
        [
            {**dict.fromkeys(rows.columns, ""), ID: "N1", "Name": "Ottilie Vandermeer",
             "Birth Date": "02/03/1961", "Mobile": "(312) 780-4412"},
            {**dict.fromkeys(rows.columns, ""), ID: "N2", "First Name": "Quentin",
             "Surname": "Abernathy", "Birth Date": "19790815", "E-mail": "qa@example.net"},
        ]
    )  # fmt: skip
    table = first_run.table.with_name("customers_v2.csv")
    pd.concat([rows, copies, strangers]).to_csv(table, index=False)
    output = first_run.output.with_name("customer_ids_v2.parquet")
    model = first_run.output.with_suffix(".model.json")

    run = resolve_csv(
        first_run.output.parent / "lakehouse",
        table,
        output,
        *("--previous", str(first_run.output), "--model", str(model)),
    )

    assert run.code == 0, run.stderr
    before, after = customer_ids(first_run.output), customer_ids(output)
    assert {k: after[k] for k in before} == before
    for copy in copies[ID]:
        assert after[copy] == before[copy.removesuffix("-again")]
    assert after["N1"] != after["N2"] and not {after["N1"], after["N2"]} & set(before.values())
    assert "training on" not in run.stderr and "reused from" in run.stdout
    assert not output.with_suffix(".model.json").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_input_is_named_without_values(first_run: FirstRun, tmp_path: Path) -> None:
    lakehouse, out = tmp_path / "lakehouse", str(tmp_path / "out.parquet")
    good = str(first_run.table)
    dupes = _write(
        tmp_path / "dupes.csv",
        "id,name,email\n1,Ann Lee,ann@example.com\n2,Bo Kim,bo@example.com\n"
        "1,Ann Leigh,ann.l@example.com\n3,Cy Park,\n2,Bo Kim,\n",
    )
    no_ids = _write(tmp_path / "no_ids.csv", "id,name\n1,Ann Lee\n,Bo Kim\n")
    broken = _write(tmp_path / "broken.parquet", "PAR1 this is not parquet")
    sheet = _write(tmp_path / "customers.xlsx", "")
    binary = tmp_path / "export.csv"
    binary.write_bytes(bytes(range(128, 256)))
    cases = [
        (["--input", good, "--id-column", "Customer", "--map", "email=E-mail"],
         f"{good}: no column 'Customer' (--id-column)"),
        (["--input", str(dupes), "--id-column", "id", "--map", "full_name=name"],
         "column 'id' (--input) has 2 duplicated id(s), e.g. 1, 2"),
        (["--input", str(no_ids), "--id-column", "id", "--map", "full_name=name"],
         "column 'id' (--input) is empty in 1 row(s)"),
        (["--input", good, "--id-column", ID, "--map", "nickname=Name"],
         "--map 'nickname=Name': unknown FIELD 'nickname'"),
        (["--input", good, "--id-column", ID, "--map", "email=Email Address"],
         "no column 'Email Address' (--map email)"),
        (["--input", str(broken), "--id-column", "id", "--map", "email=email"],
         f"{broken} (--input): cannot read it as Parquet"),
        (["--input", str(binary), "--id-column", "id", "--map", "email=email"],
         f"{binary} (--input): cannot read it as CSV (not UTF-8 text)"),
        (["--input", str(sheet), "--id-column", "id", "--map", "email=email"],
         "unsupported file type '.xlsx'; expected .csv or .parquet"),
        (["--input", str(tmp_path / "nope.csv"), "--id-column", "id", "--map", "email=email"],
         "nope.csv (--input): no such file"),
        (["--input", good, "--id-column", ID, "--map", "email=E-mail", "--phone-region", "XX"],
         "--phone-region 'XX': not a region code"),
    ]  # fmt: skip
    for args, message in cases:
        run = resolve(lakehouse, *args, "--output", out)
        said = " ".join(run.stderr.split())  # rich wraps long lines
        assert run.code == 1 and message in said, (message, said)
        assert "Traceback" not in said, said
        assert not [v for v in ("Ann", "Bo Kim", "Leigh", "@example") if v in said], said
    assert not Path(out).exists()


def test_options_of_the_file_form_need_input(tmp_path: Path) -> None:
    run = resolve(tmp_path / "lakehouse", "--output", str(tmp_path / "out.parquet"))
    assert run.code == 2 and "--output need(s) --input FILE" in run.stderr
    run = resolve(tmp_path / "lakehouse", "--input", "x.csv", "--id-column", "id")
    assert run.code == 2 and "--input needs --map, --output" in run.stderr
