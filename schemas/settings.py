"""One typed settings object for every step.

Values come, in increasing priority, from defaults that run locally, an optional YAML file
(``OMNICDP_CONFIG=path.yaml``) and ``OMNICDP_*`` environment variables, so the same code runs
on a laptop and on a cluster: configuration, not code, chooses the engine.

Every local path a setting holds (folders, files, a SQLite serving URL) is made absolute here,
once, against the working directory the settings are read in; object-store URIs stay as they
are. No step then depends on where it runs from: Delta's SQL takes only absolute path
identifiers (``REORG TABLE delta.`lakehouse/...``` is "table not found"), and a spark-submit
driver or an Airflow task may not start in the folder the command was typed in.
"""

from __future__ import annotations

import os
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from schemas.rule_files import load_rule_file

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_SQLITE = "sqlite:///"


def is_uri(path: Path | str) -> bool:
    """An object-store URI (``s3a://bucket/lake``; ``Path`` folds its "//" to "/")."""
    return ":/" in str(path)


def absolute(path: Path) -> Path:
    """``path`` from the working directory, without following links; a URI as it is."""
    return path if is_uri(path) else Path(os.path.abspath(path.expanduser()))


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``OMNICDP_CONFIG``; missing variable means no file.

    The file is checked on its own (:func:`schemas.rule_files.load_rule_file`), so a mistake
    names the file, line and setting, and never echoes a value (a serving URL can hold a
    password); its settings then take their place between the environment and the defaults.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("OMNICDP_CONFIG")
        if not path:
            return {}
        return load_rule_file(Path(path), _settings_file()).model_dump(exclude_unset=True)


@cache
def _settings_file() -> type[BaseModel]:
    """The settings as a plain model: validating ``Settings`` itself would read the sources."""
    fields: dict[str, Any] = {
        name: (info.annotation, info) for name, info in Settings.model_fields.items()
    }
    return create_model("SettingsFile", __config__=ConfigDict(extra="forbid"), **fields)


class Settings(BaseSettings):
    """Everything a step may need to know about where it runs."""

    model_config = SettingsConfigDict(env_prefix="OMNICDP_", extra="forbid")

    lakehouse: Path = Field(Path("lakehouse"), description="root folder (or URI) of all tables")
    landing: Path = Field(Path("landing"), description="where source systems drop their files")
    spark_master: str = Field("local[*]", description="Spark master URL; local[*] runs in-process")
    shuffle_partitions: int = Field(
        8, description="spark.sql.shuffle.partitions; small data wants few"
    )
    driver_memory: str = Field("4g", description="spark.driver.memory for local runs")
    spark_conf: dict[str, str] = Field(
        {},
        description="more Spark configuration, applied last (JSON object in the environment), "
        'e.g. {"spark.sql.codegen.wholeStage": "false"}: on small data, compiling each query '
        "costs more than running it",
    )
    jars_dir: Path = Field(PROJECT_ROOT / ".jars", description="cache of the Delta JVM jars")
    stream_interval_seconds: float = Field(
        10.0, gt=0, description="`omnicdp stream`: seconds between micro-batch triggers"
    )
    stream_max_files_per_trigger: int = Field(
        100, ge=1, description="landing files one stream micro-batch takes at most"
    )
    identity_engine: Literal["duckdb", "spark"] | None = Field(
        None,
        description="where Splink links records: duckdb in-process on one machine, spark on the "
        "cluster; default duckdb when spark_master is local, else spark",
    )
    identity_memory: str = Field(
        "4GB",
        description="memory the duckdb identity engine holds before it spills to disk (its u "
        "sample of 2 million scored pairs took 7.4 GB unbounded, 3.2 GB at 3GB, same time)",
    )
    match_threshold: float = Field(0.9, description="match probability at which records cluster")
    model_path: Path | None = Field(None, description="saved Splink model; default under lakehouse")
    serving_url: str | None = Field(None, description="serving store; default SQLite in lakehouse")
    serving_rate_limit: float = Field(
        50.0, description="API requests per second allowed per key (token bucket refill rate)"
    )
    serving_rate_burst: int = Field(100, description="API requests a key may send in one burst")
    serving_rate_state: Path | None = Field(
        None,
        description="SQLite file where every worker of one API server keeps the keys' rate "
        "buckets, so a key's limit holds across workers; `omnicdp serve --workers N` makes one "
        "when unset; unset and one process: kept in memory",
    )
    serving_key_cache_seconds: float = Field(
        5.0, description="how long a checked API key is trusted; a revoked key works that long"
    )
    spark_submit: bool = Field(
        False,
        description="DAGs run each Spark step with spark-submit (SparkSubmitOperator, through "
        "the Airflow connection spark_conn_id) instead of in the Airflow worker",
    )
    spark_conn_id: str = Field(
        "spark_default",
        description="with spark_submit: the Airflow connection naming the Spark master, the "
        "deploy mode and the spark-submit binary",
    )
    spark_pool: str = Field(
        "omnicdp_lakehouse",
        description="Airflow pool of every DAG's Spark tasks (they write the same Delta tables); "
        "its slots cap how many run at once; create it with `airflow pools set`",
    )
    segments_dir: Path = Field(
        PROJECT_ROOT / "jobs" / "segment_definitions",
        description="folder of marketers' segment definitions (*.yaml)",
    )
    curation_rules: Path = Field(
        PROJECT_ROOT / "jobs" / "curation_rules.yaml",
        description="curation rules: currencies, tiers, case and journey rules, next best actions",
    )
    erasure_retention_hours: float = Field(
        168.0, description="omnicdp privacy vacuum keeps Delta files this young (time travel)"
    )
    survivorship_rules: Path = Field(
        PROJECT_ROOT / "identity" / "survivorship.yaml",
        description="survivorship rules: how each golden-record attribute is chosen",
    )
    as_of: datetime | None = Field(
        None, description="reference time of curated tables; default the latest interaction"
    )

    @field_validator(
        "lakehouse",
        "landing",
        "jars_dir",
        "model_path",
        "serving_rate_state",
        "segments_dir",
        "curation_rules",
        "survivorship_rules",
    )
    @classmethod
    def _absolute_path(cls, path: Path | None) -> Path | None:
        return absolute(path) if path is not None else None

    @field_validator("serving_url")
    @classmethod
    def _absolute_sqlite_file(cls, url: str | None) -> str | None:
        if url is None or not url.startswith(_SQLITE):
            return url
        return _SQLITE + str(absolute(Path(url.removeprefix(_SQLITE))))

    def updated(self, **changes: Any) -> Settings:
        """A copy with ``changes``, checked as read settings are (paths made absolute), which
        ``model_copy(update=...)`` skips."""
        return self.model_validate({**self.model_dump(), **changes})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)

    @property
    def resolved_identity_engine(self) -> Literal["duckdb", "spark"]:
        """The configured identity engine, or the one the Spark master implies: a local
        master is one machine, where Splink on DuckDB does without Spark's per-query cost."""
        if self.identity_engine:
            return self.identity_engine
        return "duckdb" if self.spark_master.startswith("local") else "spark"

    @property
    def resolved_model_path(self) -> Path:
        """The saved model's location: configured, or beside the tables it was trained on."""
        return self.model_path or self.lakehouse / "models" / "splink_model.json"

    @property
    def resolved_serving_url(self) -> str:
        """The serving store: configured, or an embedded SQLite file beside the tables."""
        if self.serving_url:
            return self.serving_url
        if is_uri(self.lakehouse):
            raise ValueError(
                "OMNICDP_SERVING_URL must be set when the lakehouse is not a local folder"
            )
        return f"sqlite:///{self.lakehouse / 'serving' / 'omnicdp.sqlite'}"

    @property
    def reports_dir(self) -> Path:
        """Run reports, charts and HTML written for people to look at."""
        return self.lakehouse / "reports"
