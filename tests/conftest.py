"""One real SparkSession with Delta and Splink for the whole test session, on a temp lakehouse."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.lakehouse.session import get_spark
from schemas.settings import Settings
from serving.store.throwaway import server_binaries, throwaway_postgres
from tests.airflow_runs import DailyRun, shared_nightly_run

# pytest-xdist runs tests in workers whose ``__main__`` has neither ``__spec__`` nor ``__file__``.
# PySpark takes that for a doctest run and exits the process (``sys.exit(0)``) when
# ``pyspark.sql.connect`` is imported without Spark Connect's extra packages, as Great
# Expectations does. A worker's main module is named here so PySpark sees a normal program.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "<pytest-xdist worker>"

# Spark compiles each query to JVM code before it runs it. On the suite's lakehouses of a few
# hundred rows that costs more than the query: an 80-person nightly build used 210 CPU-seconds
# compiled and 158 interpreted with adaptive execution off (on two cores, where the suite is bound
# by CPU: 115 s and 90 s of wall time). Every Spark session of the suite runs so, in this
# process and in every process it starts (the CLI, ``airflow dags test``, spark-submit), through
# the setting users have for the same (``OMNICDP_SPARK_CONF``).
SMALL_DATA_SPARK_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
}
os.environ.setdefault("OMNICDP_SPARK_CONF", json.dumps(SMALL_DATA_SPARK_CONF))

# py4j logs "Closing down clientserver connection" from a finalizer at interpreter exit, after
# pytest closed its log streams, which prints a "Logging error" traceback under a green run.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    root = tmp_path_factory.mktemp("spark")
    session = get_spark(
        Settings(lakehouse=root / "lakehouse", spark_master="local[2]", shuffle_partitions=4)
    )
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: its own lakehouse and landing folders."""
    return Settings(
        lakehouse=tmp_path / "lakehouse",
        landing=tmp_path / "landing",
        spark_master="local[2]",
        shuffle_partitions=4,
    )


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway server for the module; without the server binaries the PostgreSQL tests
    skip, saying why, except under CI (``CI=true``), where a missing server is a failure."""
    binaries = server_binaries()
    if binaries is None:
        reason = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    with throwaway_postgres(binaries) as url:
        yield url


@pytest.fixture(scope="session")
def nightly_run(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> DailyRun:
    """The session's one ``airflow dags test omnicdp_daily`` (:mod:`tests.airflow_runs`), in
    the temp folder every pytest-xdist worker of this session shares. Read it; change a copy."""
    root = tmp_path_factory.getbasetemp()
    return shared_nightly_run(root if worker_id == "master" else root.parent)
