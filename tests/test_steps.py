"""The step registry: every step's job is where the registry says, task steps are what the DAGs
run, and the CLI and the registry start without Spark or Airflow (no Spark session here)."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.orchestration.steps import STEPS, TASK_STEPS, run
from schemas.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_step_names_a_job_that_takes_what_it_is_given(name: str) -> None:
    step = STEPS[name]
    parameters = list(inspect.signature(step.function()).parameters)
    expected = ["spark", "settings"] if step.spark else ["settings"]
    assert parameters[: len(expected)] == expected, step.job
    assert set(step.options) <= set(parameters), step.job


def test_task_steps_are_the_dags_spark_tasks() -> None:
    wired = {
        step
        for dag in (REPO / "dags").glob("*.py")
        for step in re.findall(r'spark_step\("(\w+)"', dag.read_text())
    }
    assert wired == set(TASK_STEPS)


def test_a_step_without_spark_starts_none(tmp_path: Path) -> None:
    settings = Settings(lakehouse=tmp_path)

    def no_spark() -> None:
        pytest.fail("setup needs no Spark")

    jars = run("setup", settings, no_spark)
    assert jars and all(jar.parent == settings.jars_dir for jar in jars)


def test_the_cli_and_the_registry_load_neither_spark_nor_airflow() -> None:
    """``omnicdp --help`` stays instant, and the CLI needs no Airflow to run a step."""
    code = (
        "import sys, jobs.cli, jobs.orchestration.steps; "
        "print(sorted(m for m in ('pyspark', 'airflow') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert loaded.strip() == "[]"


def test_a_job_option_may_be_called_like_the_runners_own_parameters() -> None:
    """``export_segment`` takes ``name``: the runners' own parameters are positional-only."""
    from jobs.cli.command import Context

    for runner, own in ((run, 3), (Context.run, 2)):
        parameters = list(inspect.signature(runner).parameters.values())
        assert [p.kind for p in parameters[:own]] == [inspect.Parameter.POSITIONAL_ONLY] * own
