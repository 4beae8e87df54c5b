"""Great Expectations plumbing: validate Spark DataFrames against suites and render Data Docs.

The suites live in code (``expectations.suites``), so each gate run builds an ephemeral GX
context: suites and validation definitions are in memory and nothing has to be kept in sync
with files. Only what people look at afterwards is written, under ``settings.reports_dir``:
validation results as JSON (``data_quality/``) and the Data Docs site (``data_docs/``), whose
index lists every gate run so far.

Results are requested in GX's BASIC format with no example values, so neither the JSON nor the
HTML repeats the names, emails or phones a failed expectation found; counts only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import great_expectations as gx
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import DataContextConfig, ProgressBarsConfig
from pyspark.sql import DataFrame

from expectations.suites import Suite
from schemas.settings import Settings

RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 0}
DATASOURCE = "omnicdp"
SITE = "omnicdp"


def data_docs_dir(settings: Settings) -> Path:
    return settings.reports_dir / "data_docs"


def _in_memory(store_class: str) -> dict[str, Any]:
    return {"class_name": store_class, "store_backend": {"class_name": "InMemoryStoreBackend"}}


def _on_disk(store_class: str, directory: Path) -> dict[str, Any]:
    return {
        "class_name": store_class,
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(directory.resolve()),
        },
    }


def project_config(settings: Settings) -> DataContextConfig:
    """Suites in memory (they are code); results and Data Docs in the reports folder."""
    return DataContextConfig(
        stores={
            "expectations_store": _in_memory("ExpectationsStore"),
            "validation_results_store": _on_disk(
                "ValidationResultsStore", settings.reports_dir / "data_quality"
            ),
            "checkpoint_store": _in_memory("CheckpointStore"),
            "validation_definition_store": _in_memory("ValidationDefinitionStore"),
        },
        expectations_store_name="expectations_store",
        validation_results_store_name="validation_results_store",
        checkpoint_store_name="checkpoint_store",
        data_docs_sites={
            SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(data_docs_dir(settings).resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )


@contextmanager
def cached(frame: DataFrame) -> Iterator[DataFrame]:
    """Keep a frame in Spark's cache while GX computes its metrics (several jobs per suite)."""
    frame.persist()
    try:
        yield frame
    finally:
        frame.unpersist()


class GateRun:
    """One gate run: validates each suite's frame and renders the results into Data Docs."""

    def __init__(self, settings: Settings, run_name: str) -> None:
        self.context = gx.get_context(mode="ephemeral", project_config=project_config(settings))
        self.index = data_docs_dir(settings) / "index.html"
        self.datasource = self.context.data_sources.add_spark(name=DATASOURCE, persist=False)
        self.run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))

    def validate(self, suite: Suite, frame: DataFrame) -> ExpectationSuiteValidationResult:
        """Validate ``frame`` in Spark against ``suite``; the result holds counts, not values."""
        batch = self.datasource.add_dataframe_asset(name=suite.name)
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(
                name=suite.name,
                data=batch.add_batch_definition_whole_dataframe("whole"),
                suite=self.context.suites.add(
                    gx.ExpectationSuite(name=suite.name, expectations=suite.expectations())
                ),
            )
        )
        with cached(frame):
            return definition.run(
                batch_parameters={"dataframe": frame},
                result_format=RESULT_FORMAT,
                run_id=self.run_id,
            )

    def build_data_docs(self) -> Path:
        """Render this run's results (and refresh the index of all runs); return the index."""
        this_run = [
            key
            for key in self.context.validation_results_store.list_keys()
            if key.run_id.to_tuple() == self.run_id.to_tuple()
        ]
        self.context.build_data_docs(site_names=[SITE], resource_identifiers=this_run)
        return self.index
