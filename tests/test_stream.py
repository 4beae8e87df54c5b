"""Streaming ingest of web and app events on real Spark Structured Streaming + Delta.

Every input line is accounted for, a rerun or a replayed micro-batch writes nothing twice, a
micro-batch that failed after writing bronze is completed by the restart, and an event with a
field no contract names lands in bronze while the stream keeps running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from jobs.cli import main
from jobs.ingest import ingest_batch
from jobs.stream import stream_ingest
from schemas.catalog import INGESTED_FILES, QUARANTINE_ROWS, STREAM_EVENTS_CHECKPOINT, bronze_table
from schemas.settings import Settings

DAY = "2026-11-01"
TS = "2026-11-01T10:00:00+09:00"


def web_event(n: int, **fields: object) -> str:
    event = {"event_id": f"W{n}", "ts": TS, "cookie_id": f"ck{n}", "event_type": "page_view"}
    return json.dumps({**event, "page": f"/p/{n}", **fields}, ensure_ascii=False)


def app_event(n: int, **fields: object) -> str:
    event = {"event_id": f"A{n}", "ts": TS, "device_id": f"dev{n}", "event_type": "app_open"}
    return json.dumps({**event, "platform": "ios", "push_opt_in": "true", **fields})


def land(settings: Settings, source: str, name: str, lines: list[str | bytes]) -> str:
    """Drop a landing file the way producers must: written aside, then renamed into place."""
    path = settings.landing / source / DAY / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    aside = path.with_name(name + ".partial")
    aside.write_bytes(data)
    aside.rename(path)
    return f"{source}/{DAY}/{name}"


def rows(spark: SparkSession, path: str) -> list:
    return spark.read.format("delta").load(path).collect()


def version(spark: SparkSession, path: str) -> int:
    return DeltaTable.forPath(spark, path).history(1).collect()[0].version


def paths(settings: Settings) -> list[str]:
    tables = (bronze_table("web"), bronze_table("app"), QUARANTINE_ROWS, INGESTED_FILES)
    return [t.path(settings) for t in tables]


def cli(settings: Settings, *args: str) -> int:
    return main(["--lakehouse", str(settings.lakehouse), "--landing", str(settings.landing), *args])


@pytest.fixture
def same_session_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds its settings from the environment; keep the test session's Spark tuning."""
    monkeypatch.setenv("OMNICDP_SPARK_MASTER", "local[2]")
    monkeypatch.setenv("OMNICDP_SHUFFLE_PARTITIONS", "4")


@pytest.mark.usefixtures("same_session_settings")
def test_once_accounts_for_every_web_and_app_line_and_prints_its_summary(
    spark: SparkSession, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    web: list[str | bytes] = [
        web_event(n, login_email=f"user{n}@example.com") for n in range(1, 201)
    ]
    web[9] = "this is not json"
    web[19] = web_event(20)[:25]  # truncated mid-line
    web[29] = web_event(30, order="not-an-object")
    web[39] = web_event(40, ts="yesterday")
    web[49] = web_event(50, page="caf\xe9").encode("latin-1")  # not UTF-8
    web[59] = web_event(60, cookie_id=None)
    app: list[str | bytes] = [app_event(n) for n in range(1, 101)]
    app[4] = app_event(5, push_opt_in="maybe")
    app[6] = app_event(7, device_id="")
    web_file = land(settings, "web", "web_events_20261101.jsonl", web)
    app_file = land(settings, "app", "app_events_20261101.jsonl", app)

    assert cli(settings, "stream", "--once") == 0

    printed = capsys.readouterr().out
    assert "stream --once: 1 micro-batch(es)" in printed
    # source, new files, skipped, lines, bronze, quarantined
    assert re.search(r"web\W+1\W+0\W+200\W+194\W+6\W", printed)
    assert re.search(r"app\W+1\W+0\W+100\W+98\W+2\W", printed)
    assert "quarantined app: 1 x field push_opt_in is not a valid boolean" in printed
    assert "user1@example.com" not in printed
    assert {
        (r.source_file, r.line_no): r.reason for r in rows(spark, QUARANTINE_ROWS.path(settings))
    } == {
        (web_file, 10): "not a JSON object (malformed or truncated line)",
        (web_file, 20): "not a JSON object (malformed or truncated line)",
        (web_file, 30): (
            "JSON does not match the web layout (a nested field holds the wrong kind of value)"
        ),
        (web_file, 40): "field ts is not a valid timestamp",
        (web_file, 50): "invalid UTF-8 bytes in line",
        (web_file, 60): "missing required field cookie_id",
        (app_file, 5): "field push_opt_in is not a valid boolean",
        (app_file, 7): "missing required field device_id",
    }
    web_rows = rows(spark, bronze_table("web").path(settings))
    assert len(web_rows) == 194 and len(rows(spark, bronze_table("app").path(settings))) == 98
    first = next(r for r in web_rows if r.line_no == 1)
    assert (first.event_id, first.source_file, first.landing_date) == ("W1", web_file, DAY)
    assert first.batch_id.startswith("stream-") and first.ingested_at is not None
    manifest = {r.source_file: r for r in rows(spark, INGESTED_FILES.path(settings))}
    assert {f: (m.lines, m.bronze_rows, m.quarantined_rows) for f, m in manifest.items()} == {
        web_file: (200, 194, 6),
        app_file: (100, 98, 2),
    }


def test_rerun_is_a_noop_and_batch_and_stream_skip_each_others_files(
    spark: SparkSession, settings: Settings
) -> None:
    batch_file = land(settings, "web", "web_batch.jsonl", [web_event(n) for n in (1, 2)])
    ingest_batch(spark, settings, sources=("web",))
    first = land(settings, "web", "web_stream.jsonl", [web_event(n) for n in range(3, 23)])

    summary = stream_ingest(spark, settings)

    assert summary.sources["web"].skipped_files == 1  # the batch-ingested file
    assert [f.source_file for f in summary.sources["web"].files] == [first]
    assert (summary.bronze_rows, summary.quarantined_rows) == (20, 0)
    versions = {p: version(spark, p) for p in paths(settings) if "app_events" not in p}

    again = stream_ingest(spark, settings)

    assert again.micro_batches == 0 and again.bronze_rows == 0
    assert {p: version(spark, p) for p in versions} == versions

    newer = land(settings, "web", "web_later.jsonl", [web_event(n) for n in (23, 24)])
    resent = land(settings, "web", "web_stream_resent.jsonl", [web_event(n) for n in range(3, 23)])

    latest = stream_ingest(spark, settings)

    reports = {f.source_file: f for f in latest.sources["web"].files}
    assert (reports[newer].bronze_rows, reports[newer].quarantined_rows) == (2, 0)
    assert (reports[resent].bronze_rows, reports[resent].quarantined_rows) == (0, 20)
    assert reports[resent].note == f"duplicate delivery of {first}"
    assert len(rows(spark, bronze_table("web").path(settings))) == 2 + 20 + 2
    batch = ingest_batch(spark, settings, sources=("web",))
    assert (len(batch.sources["web"].files), batch.sources["web"].skipped_files) == (0, 4)
    assert batch_file in {r.source_file for r in rows(spark, INGESTED_FILES.path(settings))}


def test_micro_batch_failed_after_bronze_is_completed_once_by_the_restart(
    spark: SparkSession, settings: Settings
) -> None:
    web_file = land(settings, "web", "web_events.jsonl", [*map(web_event, range(1, 101)), "{oops"])
    checkpoint = Path(STREAM_EVENTS_CHECKPOINT.path(settings))
    # A plain file where the quarantine table's folder goes: the micro-batch writes bronze, then
    # fails for real on the quarantine write, before the manifest and the checkpoint's commit.
    obstacle = Path(QUARANTINE_ROWS.path(settings))
    obstacle.parent.mkdir(parents=True)
    obstacle.write_text("")

    with pytest.raises(RuntimeError, match="failed micro-batch"):
        stream_ingest(spark, settings)

    bronze = bronze_table("web").path(settings)
    assert len(rows(spark, bronze)) == 100
    assert not DeltaTable.isDeltaTable(spark, INGESTED_FILES.path(settings))
    assert (checkpoint / "offsets" / "0").exists() and not (checkpoint / "commits" / "0").exists()
    crashed_version = version(spark, bronze)
    obstacle.unlink()

    summary = stream_ingest(spark, settings)

    (report,) = summary.sources["web"].files
    assert (report.bronze_rows, report.quarantined_rows) == (100, 1)
    line_numbers = Counter(r.line_no for r in rows(spark, bronze))
    assert sorted(line_numbers) == list(range(1, 101)) and set(line_numbers.values()) == {1}
    assert version(spark, bronze) == crashed_version  # Delta skipped the replayed bronze write
    assert [(r.source_file, r.line_no) for r in rows(spark, QUARANTINE_ROWS.path(settings))] == [
        (web_file, 101)
    ]
    # Killed after every write but before the commit: the replay finds the files recorded.
    (checkpoint / "commits" / "0").unlink()
    (checkpoint / "commits" / ".0.crc").unlink(missing_ok=True)
    versions = {p: version(spark, p) for p in paths(settings) if "app_events" not in p}

    replay = stream_ingest(spark, settings)

    assert (replay.micro_batches, replay.sources["web"].skipped_files) == (1, 1)
    assert {p: version(spark, p) for p in versions} == versions
    assert len(rows(spark, bronze)) == 100


def wait_for(path: Path, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {seconds} s")
        time.sleep(0.1)


@pytest.mark.usefixtures("same_session_settings")
def test_continuous_stream_takes_events_with_new_fields_and_stops_on_sigterm(
    spark: SparkSession,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OMNICDP_STREAM_INTERVAL_SECONDS", "0.5")
    land(settings, "app", "app_events_20261101.jsonl", [app_event(n) for n in range(1, 11)])
    commits = Path(STREAM_EVENTS_CHECKPOINT.path(settings)) / "commits"
    evolved = [
        app_event(11, ar_session={"minutes": 3}),  # a field no contract names yet
        app_event(12, account={"email": "new@example.com", "loyalty_tier": "gold"}),
    ]
    failures: list[BaseException] = []

    def feed_then_stop() -> None:
        try:
            wait_for(commits / "0")
            land(settings, "app", "app_later.jsonl", evolved)
            wait_for(commits / "1")
        except BaseException as err:  # reported by the test thread below
            failures.append(err)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    feeder = threading.Thread(target=feed_then_stop, daemon=True)
    feeder.start()
    code = cli(settings, "stream")
    feeder.join()

    assert not failures and code == 0
    assert "stream: 2 micro-batch(es)" in capsys.readouterr().out
    app_rows = {r.event_id: r for r in rows(spark, bronze_table("app").path(settings))}
    assert len(app_rows) == 12
    assert "ar_session" in app_rows["A11"]._raw
    assert app_rows["A12"].account.email == "new@example.com"
    assert "loyalty_tier" in app_rows["A12"]._raw
    assert not rows(spark, QUARANTINE_ROWS.path(settings))
