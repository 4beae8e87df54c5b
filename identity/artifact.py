"""The saved model: Splink's trained settings plus what is needed to trust and reproduce them.

A saved model is one JSON file at ``Settings.resolved_model_path``. Besides Splink's own
settings dictionary (comparisons, blocking rules, m/u probabilities) it records when it was
trained, on how many records, with which Splink version and which model specification
(``MODEL_SPEC_VERSION``), under a ``model_version`` string that every gold row produced with it
carries. Each trained model is also kept under ``versions/<model_version>.json`` beside the
current one, so an earlier resolution can be explained or repeated.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import splink

from identity.model import MODEL_SPEC_VERSION


@dataclass(frozen=True)
class SavedModel:
    """A trained model as stored on disk."""

    model_version: str
    spec_version: str
    trained_at: str
    record_count: int
    splink_version: str
    training: dict[str, Any]
    splink_settings: dict[str, Any]

    @property
    def is_current_spec(self) -> bool:
        """False when the code's model specification changed since this model was trained."""
        return self.spec_version == MODEL_SPEC_VERSION


def new_saved_model(
    splink_settings: dict[str, Any], record_count: int, training: dict[str, Any]
) -> SavedModel:
    """Wrap freshly trained Splink settings with metadata and a content-derived version."""
    trained_at = datetime.now(UTC).replace(microsecond=0)
    digest = hashlib.sha256(
        json.dumps(splink_settings, sort_keys=True, default=str).encode()
    ).hexdigest()[:8]
    return SavedModel(
        model_version=f"m{MODEL_SPEC_VERSION}-{trained_at:%Y%m%dT%H%M%SZ}-{digest}",
        spec_version=MODEL_SPEC_VERSION,
        trained_at=trained_at.isoformat(),
        record_count=record_count,
        splink_version=splink.__version__,
        training=training,
        splink_settings=splink_settings,
    )


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_model(model: SavedModel, path: Path) -> None:
    """Store ``model`` at ``path`` alone: a model that belongs to one output file
    (``identity resolve --input``), not to a lakehouse that keeps every version."""
    _write_atomically(path, json.dumps(asdict(model), indent=2, default=str))


def save_model(model: SavedModel, path: Path) -> None:
    """Store ``model`` as the current model at ``path`` and as an archived version beside it."""
    write_model(model, path.parent / "versions" / f"{model.model_version}.json")
    write_model(model, path)


def load_model(path: Path) -> SavedModel | None:
    """The model saved at ``path``, or None when there is none yet."""
    if not path.exists():
        return None
    return SavedModel(**json.loads(path.read_text(encoding="utf-8")))
