"""``omnicdp privacy request`` through the command line: one request id, one identifier.

The erasure itself (every table, every Delta version, the serving store) is tested through the
privacy DAG (``tests/test_dags.py``) and on the demo lakehouse (``tests/test_e2e_demo.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from jobs.cli import main
from jobs.privacy import erase
from schemas.catalog import ERASURE_REQUESTS
from schemas.settings import Settings
from tests.test_dags import tiny_lakehouse


def request(settings: Settings, *args: str) -> int:
    return main(["--lakehouse", str(settings.lakehouse), "privacy", "request", *args])


def test_a_request_id_names_one_request(
    spark: SparkSession, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same id for another identifier is refused, naming the id and not the identifier;
    the same id and identifier again says the request is there, and how far it got."""
    assert request(settings, "--email", "a@example.com", "--request-id", "T-1") == 0
    assert "erasure request T-1 recorded" in capsys.readouterr().out

    assert request(settings, "--email", " A@Example.com", "--request-id", "T-1") == 0
    assert "T-1 is already recorded and pending" in capsys.readouterr().out

    assert request(settings, "--email", "b@example.com", "--request-id", "T-1") == 1
    printed = capsys.readouterr()
    assert "erasure request T-1 is already recorded for another identifier" in printed.err
    assert "nothing was recorded" in printed.err
    assert "b@example" not in printed.err + printed.out
    assert request(settings, "--phone", "+1 415 555 0101", "--request-id", "T-1") == 1
    capsys.readouterr()

    stored = spark.read.format("delta").load(ERASURE_REQUESTS.path(settings)).collect()
    assert [r.request_id for r in stored] == ["T-1"]


def test_a_carried_out_request_says_when(
    spark: SparkSession, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny_lakehouse(spark, settings, "erase.me@example.com")
    assert request(settings, "--email", "erase.me@example.com", "--request-id", "T-2") == 0
    erase(spark, settings)
    capsys.readouterr()

    assert request(settings, "--email", "erase.me@example.com", "--request-id", "T-2") == 0
    assert "T-2 is already recorded and was carried out 20" in capsys.readouterr().out


def test_settings_paths_are_absolute_wherever_they_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defaults are relative (``lakehouse``, ``landing``); Delta's SQL takes absolute
    path identifiers only, and a step must not depend on the folder it starts in."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMNICDP_SERVING_URL", "sqlite:///store/serving.sqlite")
    monkeypatch.setenv("OMNICDP_MODEL_PATH", "~/model.json")
    settings = Settings(landing=Path("in"))
    assert settings.lakehouse == tmp_path / "lakehouse"
    assert settings.landing == tmp_path / "in"
    assert settings.model_path == Path.home() / "model.json"
    assert settings.serving_url == f"sqlite:///{tmp_path}/store/serving.sqlite"
    assert settings.updated(lakehouse=Path("other")).lakehouse == tmp_path / "other"
    uri = Settings(lakehouse="s3a://bucket/lake", serving_url="postgresql://u:p@db/cdp")
    assert (str(uri.lakehouse), uri.serving_url) == ("s3a:/bucket/lake", "postgresql://u:p@db/cdp")
