"""Serving starts without Spark: an API-only deployment needs neither pyspark nor pandas.

``serving`` reads the serving store and the engine-neutral contracts of ``schemas`` only. Each
import runs in a fresh interpreter, since this test session has long imported both.

Import time, fresh interpreter, median of 15 interleaved runs on the 2-core development machine
(``time.perf_counter`` around the import): ``serving.api`` 0.448 s before (pydantic models
built from Spark types, so ``pyspark.sql.types`` loaded pyspark and py4j) and 0.393 s after;
``serving.tools`` 0.812 s before and 0.679 s after (11 runs). What is left is FastAPI, pydantic,
psycopg and the MCP SDK.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_SPARK_SIDE = ("pyspark", "pandas", "py4j", "jobs", "identity", "expectations")


@pytest.mark.parametrize("module", ["serving.api", "serving.tools"])
def test_serving_imports_no_spark_pandas_or_pipeline_code(module: str) -> None:
    probe = (
        f"import json, sys; import {module}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(_SPARK_SIDE)})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []
