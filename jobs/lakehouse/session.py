"""The one SparkSession factory: Delta enabled, Splink's similarity UDFs on the classpath.

Delta's JVM jars are fetched from Maven Central once, with Maven, into ``Settings.jars_dir``
(``.jars/`` in the project) and passed as ``spark.jars``; later runs use the cache and work
offline, and on a cluster Spark ships the same files to the executors.

An application that spark-submit started (a DAG step with ``Settings.spark_submit`` on) gets its
master, jars and driver options from spark-submit; the factory then leaves those alone.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from schemas.settings import Settings

log = logging.getLogger(__name__)

# The JVM side of the pinned delta-spark Python package (pyspark 4.2 -> artifact suffix _4.2_2.13).
DELTA_VERSION = "4.4.0"
_LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
DELTA_ARTIFACTS = (
    f"io.delta:delta-spark_4.2_2.13:{DELTA_VERSION}",
    f"io.delta:delta-storage:{DELTA_VERSION}",
)


def _jar_name(artifact: str) -> str:
    _group, name, version = artifact.split(":")
    return f"{name}-{version}.jar"


def ensure_delta_jars(jars_dir: Path) -> list[Path]:
    """Return the Delta jars, downloading any that are missing with ``mvn dependency:copy``."""
    installed = importlib.metadata.version("delta-spark")
    if installed != DELTA_VERSION:
        raise RuntimeError(
            f"delta-spark {installed} is installed but omnicdp is tested with {DELTA_VERSION}; "
            "reinstall with `make venv`"
        )
    jars_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for artifact in DELTA_ARTIFACTS:
        path = jars_dir / _jar_name(artifact)
        if not path.exists():
            _fetch_with_maven(artifact, jars_dir)
        paths.append(path)
    return paths


def _fetch_with_maven(artifact: str, jars_dir: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError(
            f"{artifact} is not cached in {jars_dir} and Maven (mvn) is not installed to fetch it"
        )
    log.info("fetching %s into %s", artifact, jars_dir)
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={artifact}",
            f"-DoutputDirectory={jars_dir}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"mvn could not fetch {artifact}:\n{result.stdout[-2000:]}")


def _splink_jar() -> str:
    from splink.backends.spark import similarity_jar_location

    return similarity_jar_location()


def spark_jars(settings: Settings) -> list[str]:
    """The JVM jars every omnicdp Spark application needs: Delta's and Splink's similarity UDFs."""
    return [str(p) for p in ensure_delta_jars(settings.jars_dir)] + [_splink_jar()]


def launched_by_spark_submit() -> bool:
    """Whether spark-submit started this Python process, with a JVM already configured from its
    command line (pyspark connects to that JVM through the gateway port it is given)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


_CODEGEN_CACHE_ENTRIES = 5_000


def get_spark(settings: Settings, app_name: str = "omnicdp") -> SparkSession:
    """Build (or return the running) SparkSession configured for Delta and Splink."""
    # Python UDF workers must run the interpreter that has our packages (not the system one);
    # on a cluster the deployment sets PYSPARK_PYTHON and this default does not apply.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    if not launched_by_spark_submit():
        # Under spark-submit these came with the command line (the cluster's master, --jars,
        # --name, the driver's memory); setting them here would override the launcher's.
        builder = (
            builder.appName(app_name)
            .master(settings.spark_master)
            .config("spark.jars", ",".join(spark_jars(settings)))
            .config("spark.driver.memory", settings.driver_memory)
            .config("spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile={_LOG4J_CONFIG}")
        )
    builder = (
        builder.config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.adaptive.enabled", "true")
        # Compiled query code is cached by its source, 100 entries by default. With 5,000, a
        # session's later micro-batches reuse more of it: the third 100-event micro-batch of
        # one session took 57.9 s instead of 85.5 s (300-person benchmark lakehouse, local[2]).
        .config("spark.sql.codegen.cache.maxEntries", str(_CODEGEN_CACHE_ENTRIES))
    )
    for key, value in settings.spark_conf.items():  # the user's word is the last
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(str(settings.lakehouse / "_checkpoints" / "spark"))
    return spark
