"""The serving store: what agent tools read in milliseconds, published from gold.

``base`` holds the interface and everything the backends share (the generation scheme is
described there); ``sqlite`` is the embedded default and ``postgres`` the store at scale. The
settings' ``serving_url`` chooses one through :func:`open_store`.
"""

from __future__ import annotations

from serving.store.base import ServingStore
from serving.store.postgres import PostgresStore
from serving.store.sqlite import SQLiteStore

_BACKENDS: dict[str, type[ServingStore]] = {
    "sqlite": SQLiteStore,
    "postgresql": PostgresStore,
    "postgresql+psycopg": PostgresStore,
    "postgres": PostgresStore,
}


def open_store(url: str) -> ServingStore:
    """The store a URL names: ``sqlite:///path/file.sqlite`` or ``postgresql://...``."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise ValueError(
            f"serving store URL must start with sqlite:/// or postgresql:// (got {scheme or url!r})"
        )
    return backend(url)
