"""Quality gates on real Spark, Delta and Great Expectations, and a DAG run that a gate stops.

The gates run on small hand-built silver and gold tables: they pass on good rows, and on bad
rows (a duplicated record id, malformed emails, consent stored as text, a record the xref maps
twice or not at all, a golden attribute that cites no record or a record of no customer) they
raise GateFailed with a message naming the table, the expectation, the column and how many rows
failed, and neither that message nor the Data Docs repeat the offending values. The last test
writes bad silver and runs ``airflow dags test``: the silver gate fails at its first try and
nothing after it runs.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from expectations.gate import GateFailed, run_gate
from jobs.ingest import ingest_batch
from schemas.catalog import (
    GOLD_AGENT_CONTEXT,
    GOLD_CUSTOMER_360,
    GOLD_CUSTOMER_PROFILE,
    GOLD_CUSTOMER_TIMELINE,
    GOLD_IDENTITY_LINKS,
    GOLD_IDENTITY_XREF,
    GOLD_JOURNEY_METRICS,
    GOLD_SEGMENT_MEMBERSHIP,
    INGESTED_FILES,
    SILVER_CUSTOMER_RECORDS,
    SILVER_INTERACTIONS,
    Table,
)
from schemas.settings import Settings
from schemas.tables import (
    AGENT_CONTEXT,
    CUSTOMER_360,
    CUSTOMER_PROFILE,
    CUSTOMER_RECORDS,
    CUSTOMER_TIMELINE,
    IDENTITY_XREF,
    INTERACTIONS,
    JOURNEY_METRICS,
    SEGMENT_MEMBERSHIP,
)
from schemas.types import DOUBLE, Field, Struct
from serving.store import open_store
from serving.store.base import CUSTOMER
from tests.airflow_runs import DAG_ID, airflow, airflow_env, migrated_home, output_of, task_states
from tests.builders import frame, record_of, table_row, xref_row
from tests.test_ingest import pos_file

SEEN = datetime(2026, 11, 1, 10, 0)
MALFORMED_EMAILS = ("minji.kim@@example", "Anna.Schmidt@Example.DE")


def customer_record(record_id: str, **fields: Any) -> dict[str, Any]:
    """A silver record seen once, at ``SEEN``."""
    return record_of(record_id, **{"first_seen_at": SEEN, "last_seen_at": SEEN, **fields})


def interaction(interaction_id: str, record_id: str | None) -> dict[str, Any]:
    source = interaction_id.split(":", 1)[0]
    return table_row(
        INTERACTIONS,
        interaction_id=interaction_id,
        source=source,
        channel=source,
        record_id=record_id,
        ts=SEEN,
        type="visit",
        source_file=f"{source}/2026-11-01/export.csv",
        line_no=2,
    )


GOOD_RECORDS = [
    customer_record(
        "pos:l100", email="minji.kim@example.com", phone="+821012345678", email_opt_in=True
    ),
    customer_record("web:anna.schmidt@example.de", email="anna.schmidt@example.de"),
    customer_record("social:jiwoo_p", phone="+14155552671", ads_opt_in=False),
]
BAD_RECORDS = [
    *GOOD_RECORDS,
    customer_record("pos:l100", email=MALFORMED_EMAILS[0]),  # the same record twice
    customer_record("call_center:c7", email=MALFORMED_EMAILS[1]),  # silver must lower-case
]
INTERACTIONS_ROWS = [
    interaction("pos:T1", "pos:l100"),
    interaction("web:E1", "web:anna.schmidt@example.de"),
    interaction("web:E2", None),
]


def write(
    spark: SparkSession, settings: Settings, table: Table, rows: list, schema: Struct
) -> None:
    frame(spark, rows, schema).write.format("delta").mode("overwrite").save(table.path(settings))


def write_silver(spark: SparkSession, settings: Settings, records: DataFrame) -> None:
    records.write.format("delta").save(SILVER_CUSTOMER_RECORDS.path(settings))
    write(spark, settings, SILVER_INTERACTIONS, INTERACTIONS_ROWS, INTERACTIONS)


def good_records(spark: SparkSession) -> DataFrame:
    return frame(spark, GOOD_RECORDS, CUSTOMER_RECORDS)


def bad_records(spark: SparkSession) -> DataFrame:
    """A duplicated record id, malformed emails, and email consent as text ('yes')."""
    records = frame(spark, BAD_RECORDS, CUSTOMER_RECORDS)
    return records.withColumn("email_opt_in", F.when(F.col("email_opt_in"), "yes"))


def files_under(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


# --- silver --------------------------------------------------------------------------------


def test_silver_gate_passes_on_good_records(spark: SparkSession, settings: Settings) -> None:
    write_silver(spark, settings, good_records(spark))

    result = run_gate(spark, settings, "silver")

    assert result.success
    assert result.suites == {"silver.customer_records": True, "silver.interactions": True}
    assert Path(result.data_docs).is_file()


def test_silver_gate_names_duplicates_and_bad_emails_without_values(
    spark: SparkSession, settings: Settings
) -> None:
    write_silver(spark, settings, bad_records(spark))

    with pytest.raises(GateFailed) as failed:
        run_gate(spark, settings, "silver")

    message = str(failed.value)
    assert message.startswith("silver gate failed: 3 of ")
    assert (
        "silver.customer_records: expect_column_values_to_be_unique on record_id: 2 of 5 rows fail"
    ) in message
    assert (
        "silver.customer_records: emails are lower-case and well formed "
        "(expect_column_values_to_match_regex on email): 2 of 5 rows fail"
    ) in message
    assert (
        "silver.customer_records: consent is true, false or unknown "
        "(expect_column_values_to_be_of_type on email_opt_in): observed StringType"
    ) in message
    assert failed.value.result.suites == {
        "silver.customer_records": False,
        "silver.interactions": True,
    }
    reports = files_under(settings.reports_dir)
    for email in MALFORMED_EMAILS:
        assert email not in message
        assert email not in reports


# --- gold ----------------------------------------------------------------------------------


def profile(customer_id: str, record_count: int, **cited: tuple[Any, str | None]) -> dict[str, Any]:
    """A golden record; ``cited`` gives attributes as ``column=(value, cited record_id)``."""
    row = table_row(
        CUSTOMER_PROFILE,
        customer_id=customer_id,
        record_count=record_count,
        model_version="m1",
        resolved_at=SEEN,
    )
    row.update({column: value for column, (value, _) in cited.items()})
    row["provenance"] = {
        column: {"record_id": record, "rule": "most_recent"}
        for column, (_, record) in cited.items()
        if record is not None
    }
    return row


def test_gold_gate_finds_records_mapped_twice_or_never_missing_profiles_and_uncited_values(
    spark: SparkSession, settings: Settings
) -> None:
    records = ["pos:l100", "web:anna.schmidt@example.de", "social:jiwoo_p", "call_center:c7"]
    write(
        spark,
        settings,
        SILVER_CUSTOMER_RECORDS,
        [customer_record(r) for r in records],
        CUSTOMER_RECORDS,
    )
    write(
        spark,
        settings,
        GOLD_IDENTITY_XREF,
        [
            xref_row(records[0], "C1", 2, SEEN),
            xref_row(records[1], "C1", 2, SEEN),
            xref_row(records[2], "C2", 1, SEEN),
            xref_row(records[2], "C3", 1, SEEN),  # one record, two customers; call_center:c7, none
        ],
        IDENTITY_XREF,
    )
    write(
        spark,
        settings,
        GOLD_CUSTOMER_PROFILE,
        [
            profile(
                "C1",
                2,
                email=("anna.schmidt@example.de", records[1]),  # its own record: fine
                phone=("+4915177730261", records[3]),  # a record of no customer
            ),
            profile("C2", 1, country=("KR", None)),  # a value without provenance
        ],
        CUSTOMER_PROFILE,
    )
    links = Struct(Field("match_probability", DOUBLE))
    write(spark, settings, GOLD_IDENTITY_LINKS, [{"match_probability": 0.97}], links)

    with pytest.raises(GateFailed) as failed:
        run_gate(spark, settings, "gold")

    message = str(failed.value)
    assert (
        "gold.xref_coverage: every silver record is mapped exactly once in the xref "
        "(expect_column_values_to_be_between on xref_rows): 2 of 4 rows fail"
    ) in message
    assert (
        "gold.profiles_per_customer: exactly one golden record per customer_id "
        "(expect_column_values_to_be_between on profiles): 1 of 3 rows fail"
    ) in message
    assert "gold.identity_xref: expect_column_values_to_be_unique on record_id: 2 of 4" in message
    assert (
        "gold.profile_provenance: a golden attribute has provenance exactly when it has a value "
        "(expect_column_values_to_be_between on cited): 1 of 22 rows fail"
    ) in message
    assert (
        "gold.profile_provenance: provenance names one of the customer's own records "
        "(expect_column_values_to_be_between on own_record): 1 of 22 rows fail"
    ) in message
    assert "gold.customer_profile" not in message  # its columns, provenance struct included
    assert "+4915177730261" not in message


# --- curated -------------------------------------------------------------------------------


def row_of(schema: Struct, **values: Any) -> dict[str, Any]:
    """A row of ``schema`` with ``values`` and nulls elsewhere (``as_of`` set)."""
    return table_row(schema, **{"as_of": SEEN, **values})


def test_curated_gate_finds_missing_screens_unconsented_members_and_broken_timelines(
    spark: SparkSession, settings: Settings
) -> None:
    write(
        spark,
        settings,
        GOLD_CUSTOMER_PROFILE,
        [profile("C1", 1), profile("C2", 1)],
        CUSTOMER_PROFILE,
    )
    write(
        spark,
        settings,
        GOLD_CUSTOMER_360,
        [row_of(CUSTOMER_360, customer_id="C1", consent_email=False)] * 2,  # twice; C2 missing
        CUSTOMER_360,
    )
    write(
        spark,
        settings,
        GOLD_AGENT_CONTEXT,
        [row_of(AGENT_CONTEXT, customer_id=c) for c in ("C1", "C2")],
        AGENT_CONTEXT,
    )
    write(
        spark,
        settings,
        GOLD_SEGMENT_MEMBERSHIP,
        [
            row_of(
                SEGMENT_MEMBERSHIP, segment="newsletter", customer_id="C1", consent_purpose="email"
            )
        ],
        SEGMENT_MEMBERSHIP,
    )
    step = {"ts": SEEN, "channel": "web"}
    write(
        spark,
        settings,
        GOLD_CUSTOMER_TIMELINE,
        [table_row(CUSTOMER_TIMELINE, customer_id="C1", seq=1, **step)] * 2,
        CUSTOMER_TIMELINE,
    )
    journey = table_row(JOURNEY_METRICS, day=SEEN.date(), channel="web")
    write(
        spark, settings, GOLD_JOURNEY_METRICS, [{**journey, "adoption_rate": 1.5}], JOURNEY_METRICS
    )

    with pytest.raises(GateFailed) as failed:
        run_gate(spark, settings, "curated")

    message = str(failed.value)
    assert message.startswith("curated gate failed: ")
    assert (
        "gold.customers_curated: exactly one customer_360 row per golden record "
        "(expect_column_values_to_be_between on customer_360_rows): 2 of 2 rows fail"
    ) in message
    assert (
        "gold.segment_consent: every segment member consented to the segment's purpose "
        "(expect_column_values_to_be_between on consented): 1 of 1 rows fail"
    ) in message
    assert "gold.customer_timeline: expect_compound_columns_to_be_unique" in message
    assert "gold.journey_metrics: expect_column_values_to_be_between on adoption_rate" in message
    assert "agent_context_rows" not in message  # one screen each: that expectation holds


def test_bronze_gate_fails_when_nothing_was_ingested(
    spark: SparkSession, settings: Settings
) -> None:
    with pytest.raises(GateFailed) as failed:
        run_gate(spark, settings, "bronze")

    assert "bronze.pos_transactions: tables exist: no Delta table bronze.pos_transactions" in str(
        failed.value
    )


def test_bronze_gate_holds_a_10x_spike_in_one_source_naming_its_files(
    spark: SparkSession, settings: Settings
) -> None:
    spike = [
        f"T{i},S01,KR,3,2026-11-08 10:00:00,L{i},,,SKU1:beauty:1:1000,1000.00,KRW"
        for i in range(44)
    ]
    pos_file(settings, "pos_S01_20261108.csv", spike)
    ingest_batch(spark, settings, sources=("pos",))
    earlier = spark.createDataFrame(
        [
            ("pos", f"pos/2026-11-0{d}/pos.csv", 4, 1, f"b{d}", datetime(2026, 11, d))
            for d in (1, 2, 3)
        ],
        "source string, source_file string, lines long, header_lines long, batch_id string,"
        " ingested_at timestamp",
    )
    earlier.write.format("delta").mode("append").option("mergeSchema", "true").save(
        INGESTED_FILES.path(settings)
    )

    with pytest.raises(GateFailed) as failed:
        run_gate(spark, settings, "bronze")

    assert str(failed.value).splitlines()[1:] == [
        "  - bronze.volume: the newest batch of each source has at most 10x the median lines"
        " of its earlier batches; pos: pos/2026-11-01/pos_S01_20261108.csv"
        " (expect_column_values_to_be_between on growth): 1 of 1 rows fail"
    ]


# --- the gate in the DAG -------------------------------------------------------------------


def test_failed_silver_gate_stops_the_daily_dag_before_anything_is_published(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Bad silver as if standardize had written it: ingest, the bronze gate and standardize are
    marked successful without running, so the silver gate sees exactly these rows."""
    settings = Settings(
        lakehouse=tmp_path / "lakehouse",
        landing=tmp_path / "landing",
        spark_master="local[2]",
        shuffle_partitions=4,
    )
    write_silver(spark, settings, bad_records(spark))
    store = open_store(settings.resolved_serving_url)
    with store.publish() as served:  # what agents see today: one customer
        served.load(CUSTOMER, [("C1", "Ann", "gold", 0, "{}", "{}")])
    home = migrated_home(tmp_path)

    result = airflow(
        "dags",
        "test",
        DAG_ID,
        "--mark-success-pattern",
        "ingest|gate_bronze|standardize",
        env=airflow_env(home, settings),
        timeout=600,
    )

    assert result.returncode != 0
    states = task_states(home)
    assert states["gate_silver"] == ("failed", 1)  # failed at once: retrying cannot fix data
    for later in ("resolve_identities", "gate_gold", "curate", "build_segments", "publish"):
        assert states[later][0] == "upstream_failed", later
    assert states["run_report"] == ("failed", 1)  # it ran, wrote the report, failed the run
    (report_path,) = (settings.reports_dir / "runs").glob("*.json")
    report = json.loads(report_path.read_text())
    assert report["complete"] is False
    assert report["gates"]["silver"]["success"] is False
    assert report["steps"]["publish"]["status"] == "no result"
    assert "silver gate failed" in output_of(result)
    assert not DeltaTable.isDeltaTable(spark, GOLD_IDENTITY_XREF.path(settings))
    try:
        generation = store.current()
        assert generation.number == served.number  # nothing was published over it
        assert generation.customer("C1").display_name == "Ann"
    finally:
        store.close()
