"""Bronze ingest on real Spark + Delta: every input line is accounted for, bad input is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from jobs.ingest import ingest_batch
from schemas.catalog import INGESTED_FILES, QUARANTINE_ROWS, bronze_table
from schemas.settings import Settings
from schemas.sources import CALL_CENTER, POS

POS_HEADER = ",".join(POS.columns)
POS_ROWS = [
    "T1,S01,KR,3,2026-11-01 10:00:00,L100,Kim Minji,010-1234-5678,SKU1:beauty:1:12000,12000.00,KRW",
    'T2,S01,KR,3,2026-11-01 10:05:00,,"Park, Jiwoo",,SKU2:home:2:5000,10000.00,KRW',
    "T3,S01,KR,3,2026-11-01 10:09:00,L101,Lee Seojun,01098765432,SKU3:grocery:1:3000,3000.00,KRW",
]


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def pos_file(settings: Settings, name: str, rows: list[str], header: str = POS_HEADER) -> Path:
    return write(settings.landing / "pos" / "2026-11-01" / name, "\n".join([header, *rows]) + "\n")


def web_event(event_id: str, **extra: object) -> str:
    event = {
        "event_id": event_id,
        "ts": "2026-11-01T10:00:00+09:00",
        "cookie_id": "ck1",
        "event_type": "page_view",
        "page": "/",
    }
    event.update(extra)
    return json.dumps(event, ensure_ascii=False)


def table_rows(spark: SparkSession, path: str) -> list:
    return spark.read.format("delta").load(path).collect()


def quarantine(spark: SparkSession, settings: Settings) -> dict[tuple[str, int], str]:
    return {
        (r.source_file, r.line_no): r.reason
        for r in table_rows(spark, QUARANTINE_ROWS.path(settings))
    }


def test_good_csv_lands_in_bronze_with_metadata(spark: SparkSession, settings: Settings) -> None:
    pos_file(settings, "pos_S01_20261101.csv", POS_ROWS)

    summary = ingest_batch(spark, settings, sources=("pos",))

    rows = sorted(table_rows(spark, bronze_table("pos").path(settings)), key=lambda r: r.line_no)
    assert [r.transaction_id for r in rows] == ["T1", "T2", "T3"]
    assert [r.line_no for r in rows] == [2, 3, 4]
    assert rows[1].customer_name == "Park, Jiwoo"  # quoted comma stays one field
    assert rows[0].source_file == "pos/2026-11-01/pos_S01_20261101.csv"
    assert rows[0].landing_date == "2026-11-01"
    assert rows[0].batch_id == summary.batch_id
    assert summary.reconciled
    assert summary.sources["pos"].bronze_rows == 3


def test_bad_csv_lines_wrong_types_and_absurd_dates_are_quarantined_with_file_line_and_reason(
    spark: SparkSession, settings: Settings
) -> None:
    truncated = POS_ROWS[2][:40]  # cut mid-line, as a partial upload would
    bad_amount = POS_ROWS[0].replace("T1,", "T9,").replace("12000.00", "twelve")
    no_id = POS_ROWS[0].replace("T1,", ",")
    broken_quote = 'T8,S01,KR,3,2026-11-01 10:00:00,L1,"Kim,010,SKU:a:1:1,1.00,KRW'
    no_such_day = POS_ROWS[0].replace("T1,", "T7,").replace("2026-11-01", "2026-02-30")
    far_future = POS_ROWS[0].replace("T1,", "T6,").replace("2026-11-01", "2206-11-01")
    till_reset = POS_ROWS[0].replace("T1,", "T5,").replace("2026-11-01", "1970-01-01")
    lines = [POS_ROWS[0], truncated, bad_amount, no_id, broken_quote]
    pos_file(settings, "pos.csv", [*lines, no_such_day, far_future, till_reset])

    summary = ingest_batch(spark, settings, sources=("pos",))

    reasons = quarantine(spark, settings)
    f = "pos/2026-11-01/pos.csv"
    assert reasons == {
        (f, 3): "expected 11 fields, found 7",
        (f, 4): "field amount is not a valid decimal",
        (f, 5): "missing required field transaction_id",
        (f, 6): "unbalanced double quote (truncated line?)",
        (f, 7): "field ts is not a valid timestamp",
        (f, 8): "field ts is not a plausible time (before 2000-01-01 or over 2 days ahead)",
        (f, 9): "field ts is not a plausible time (before 2000-01-01 or over 2 days ahead)",
    }
    assert summary.sources["pos"].bronze_rows == 1
    assert summary.sources["pos"].quarantined_rows == 7
    assert summary.reconciled


def test_reordered_and_extra_columns_map_by_header_name(
    spark: SparkSession, settings: Settings
) -> None:
    columns = [*reversed(POS.columns), "cashier_note"]
    values = [*reversed(POS_ROWS[0].split(",")), "hello"]
    pos_file(settings, "reordered.csv", [",".join(values)], header=",".join(columns))

    ingest_batch(spark, settings, sources=("pos",))

    (row,) = table_rows(spark, bronze_table("pos").path(settings))
    assert (row.transaction_id, row.amount, row.phone) == ("T1", "12000.00", "010-1234-5678")
    assert "hello" in row._raw  # the unknown column is not lost


def test_file_missing_a_required_column_is_quarantined_naming_it(
    spark: SparkSession, settings: Settings
) -> None:
    columns = [c for c in CALL_CENTER.columns if c != "case_id"]
    row = ["C1", "2026-11-01T10:00:00+09:00", "+821012345678", "Kim", "KR", "return", "resolved"]
    row += ["300", "false", "false"]
    write(
        settings.landing / "call_center" / "2026-11-01" / "calls.csv",
        ",".join(columns) + "\n" + ",".join(row) + "\n",
    )

    summary = ingest_batch(spark, settings, sources=("call_center",))

    assert set(quarantine(spark, settings).values()) == {"missing column(s) in header: case_id"}
    assert summary.sources["call_center"].quarantined_rows == 1
    assert summary.reconciled


def test_json_lines_bad_json_wrong_shape_and_bad_bytes(
    spark: SparkSession, settings: Settings
) -> None:
    lines = [
        web_event("E1").encode(),
        b"this is not json",
        web_event("E3")[:30].encode(),  # truncated
        web_event("E4", order="not-an-object").encode(),
        web_event("E5", ts="yesterday").encode(),
        web_event("E6", page="caf\xe9").encode("latin-1"),  # not UTF-8
        web_event("E7", brand_new_field={"x": 1}).encode(),  # schema evolution: accepted
    ]
    write(settings.landing / "web" / "2026-11-01" / "web.jsonl", b"\n".join(lines) + b"\n")

    summary = ingest_batch(spark, settings, sources=("web",))

    f = "web/2026-11-01/web.jsonl"
    assert quarantine(spark, settings) == {
        (f, 2): "not a JSON object (malformed or truncated line)",
        (f, 3): "not a JSON object (malformed or truncated line)",
        (f, 4): "JSON does not match the web layout (a nested field holds the wrong kind of value)",
        (f, 5): "field ts is not a valid timestamp",
        (f, 6): "invalid UTF-8 bytes in line",
    }
    bronze = table_rows(spark, bronze_table("web").path(settings))
    assert sorted(r.event_id for r in bronze) == ["E1", "E7"]
    assert "brand_new_field" in next(r._raw for r in bronze if r.event_id == "E7")
    assert summary.reconciled


def test_reingest_is_a_noop_and_duplicate_delivery_is_named(
    spark: SparkSession, settings: Settings
) -> None:
    original = pos_file(settings, "pos_S01.csv", POS_ROWS)
    ingest_batch(spark, settings, sources=("pos",))
    bronze_path = bronze_table("pos").path(settings)
    version = DeltaTable.forPath(spark, bronze_path).history(1).collect()[0].version

    again = ingest_batch(spark, settings, sources=("pos",))
    assert again.sources["pos"].skipped_files == 1
    assert not again.sources["pos"].files
    assert DeltaTable.forPath(spark, bronze_path).history(1).collect()[0].version == version

    shutil.copy(original, original.with_name("pos_S01_resent.csv"))
    resent = ingest_batch(spark, settings, sources=("pos",))

    assert len(table_rows(spark, bronze_path)) == 3
    reasons = set(quarantine(spark, settings).values())
    assert reasons == {"duplicate delivery of pos/2026-11-01/pos_S01.csv"}
    (report,) = resent.sources["pos"].files
    assert (report.bronze_rows, report.quarantined_rows) == (0, 3)
    assert report.note == "duplicate delivery of pos/2026-11-01/pos_S01.csv"


def test_empty_file_is_recorded_not_lost(spark: SparkSession, settings: Settings) -> None:
    write(settings.landing / "social" / "2026-11-01" / "social.jsonl", "")

    summary = ingest_batch(spark, settings, sources=("social",))

    (report,) = summary.sources["social"].files
    assert (report.lines, report.note) == (0, "empty file")
    manifest = table_rows(spark, INGESTED_FILES.path(settings))
    assert [(r.source_file, r.lines) for r in manifest] == [("social/2026-11-01/social.jsonl", 0)]
    assert ingest_batch(spark, settings, sources=("social",)).sources["social"].skipped_files == 1


def test_interrupted_ingest_is_completed_without_duplicates(
    spark: SparkSession, settings: Settings
) -> None:
    """A run that wrote bronze but died before the manifest: the rerun completes it exactly."""
    pos_file(settings, "pos.csv", [*POS_ROWS, "garbage"])
    ingest_batch(spark, settings, sources=("pos",))
    DeltaTable.forPath(spark, INGESTED_FILES.path(settings)).delete()  # as if never recorded

    summary = ingest_batch(spark, settings, sources=("pos",))

    assert len(table_rows(spark, bronze_table("pos").path(settings))) == 3
    assert len(table_rows(spark, QUARANTINE_ROWS.path(settings))) == 1
    (report,) = summary.sources["pos"].files
    assert (report.bronze_rows, report.quarantined_rows) == (3, 1)
    assert report.reconciled
