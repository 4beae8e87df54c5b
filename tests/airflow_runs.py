"""Airflow as an operator runs it, for the tests: the CLI in a subprocess on its own
AIRFLOW_HOME (the default SQLite metadata database), and one nightly run shared by the session.

The nightly run is a real ``airflow dags test omnicdp_daily`` on a small simulated population,
every file landed but the last day's web and app events (held back for the micro-batch tests).
It is the most expensive thing the suite does, and the suite is bound by its two cores, so it
runs once per session: the first pytest-xdist worker to ask builds it under a file lock, the
others wait and read it. Tests that change a lakehouse change a copy (:func:`copy_run`).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jobs.simulate import simulate
from schemas.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO / "dags"
AIRFLOW = Path(sys.executable).parent / "airflow"
DAG_ID = "omnicdp_daily"
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
NIGHTLY_PEOPLE = 80
HELD_SOURCES = ("web", "app")


def airflow_env(home: Path, settings: Settings) -> dict[str, str]:
    """The environment of an Airflow process for ``settings``' lakehouse, free of the caller's
    own Airflow and omnicdp configuration."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OMNICDP_"))}
    return {
        **inherited,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # The worker imports jobs/, identity/ and expectations/ from this checkout.
        "PYTHONPATH": str(REPO),
        "OMNICDP_LAKEHOUSE": str(settings.lakehouse),
        "OMNICDP_LANDING": str(settings.landing),
        "OMNICDP_SPARK_MASTER": settings.spark_master,
        "OMNICDP_SHUFFLE_PARTITIONS": str(settings.shuffle_partitions),
        "OMNICDP_DRIVER_MEMORY": "2g",
        "OMNICDP_SPARK_CONF": json.dumps(settings.spark_conf),
    }


def airflow(
    *args: str, env: dict[str, str], timeout: int, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AIRFLOW), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def migrated_home(root: Path) -> Path:
    """A fresh AIRFLOW_HOME whose SQLite metadata database is migrated (about 7 s)."""
    home = root / "airflow"
    env = airflow_env(home, Settings(lakehouse=root / "unused", landing=root / "unused"))
    result = airflow("db", "migrate", env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return home


def task_states(home: Path, dag_id: str = DAG_ID) -> dict[str, tuple[str, int]]:
    """(state, try number) of every task of the DAG's latest run, from the metadata database."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, state, try_number FROM task_instance WHERE run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (dag_id,),
        ).fetchall()
    return {task_id: (state, tries) for task_id, state, tries in rows}


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def returned_by(home: Path, task_id: str, dag_id: str = DAG_ID) -> dict:
    """The summary a task of the DAG's latest run returned (its XCom), from the metadata db."""
    with sqlite3.connect(home / "airflow.db") as db:
        (value,) = db.execute(
            "SELECT value FROM xcom WHERE task_id = ? AND key = 'return_value' AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
            (task_id, dag_id),
        ).fetchone()
    return json.loads(value)


@dataclass(frozen=True)
class DailyRun:
    """A finished ``airflow dags test omnicdp_daily``: its process result, its AIRFLOW_HOME,
    the settings of its lakehouse, and the landing day folders it did not see yet."""

    result: subprocess.CompletedProcess[str]
    home: Path
    settings: Settings
    held: Path


def shared_nightly_run(root: Path) -> DailyRun:
    """The session's nightly run under ``root`` (a folder every worker of the session shares),
    built by the first caller; a failed run is returned as it is, for its test to report."""
    with _exclusive(root / "nightly.lock"):
        run_root = root / "nightly"
        if not (run_root / "result.json").exists():
            _run_nightly(run_root)
    return _read_run(run_root)


def copy_run(run: DailyRun, root: Path) -> DailyRun:
    """A private copy of ``run`` (lakehouse, landing, AIRFLOW_HOME) under ``root``, to change."""
    for folder in (run.settings.lakehouse, run.settings.landing, run.home):
        shutil.copytree(folder, root / folder.name)
    config = root / run.home.name / "airflow.cfg"  # names its database and logs by full path
    config.write_text(config.read_text().replace(str(run.home), str(root / run.home.name)))
    settings = run.settings.updated(
        lakehouse=root / run.settings.lakehouse.name, landing=root / run.settings.landing.name
    )
    return DailyRun(run.result, root / run.home.name, settings, run.held)


def _nightly_settings(root: Path) -> Settings:
    return Settings(
        lakehouse=root / "lakehouse",
        landing=root / "landing",
        spark_master="local[2]",
        shuffle_partitions=4,
    )


def _run_nightly(root: Path) -> None:
    settings = _nightly_settings(root)
    simulate(settings.landing, people=NIGHTLY_PEOPLE, seed=11, days=3)
    for source in HELD_SOURCES:
        last_day = sorted((settings.landing / source).iterdir())[-1]
        shutil.move(last_day, root / "held" / source / last_day.name)
    home = migrated_home(root)
    result = airflow("dags", "test", DAG_ID, env=airflow_env(home, settings), timeout=1200)
    outcome = {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}
    (root / "result.json").write_text(json.dumps(outcome))


def _read_run(root: Path) -> DailyRun:
    outcome = json.loads((root / "result.json").read_text())
    result = subprocess.CompletedProcess([str(AIRFLOW), "dags", "test", DAG_ID], **outcome)
    return DailyRun(result, root / "airflow", _nightly_settings(root), root / "held")


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created if missing) for the block."""
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
