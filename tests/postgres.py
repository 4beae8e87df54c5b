"""A throwaway PostgreSQL server for tests: a fresh cluster in a temp folder, on a unix socket.

It uses the server binaries of the Debian ``postgresql`` package (``.ci/run`` installs them).
Without them the PostgreSQL tests skip, saying why, except under CI (``CI=true``), where a
missing server is a failure. ``initdb`` refuses to run as root, so as root the cluster runs as
the ``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

_PORT = 54329


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's versioned folder."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def require_binaries() -> Path:
    binaries = server_binaries()
    if binaries is None:
        reason = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    return binaries


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a cluster, yield its URL, stop it and delete it."""
    binaries = require_binaries()
    folder = Path(tempfile.mkdtemp(prefix="omnicdp-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    run = subprocess.run
    try:
        run(
            _as_server_user(
                [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-k {folder} -p {_PORT} -c listen_addresses='' -c fsync=off"
        pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data)]
        log = str(folder / "log")  # the server keeps its output away from our pipes
        run(
            _as_server_user([*pg_ctl, "-l", log, "-o", options, "-w", "start"]),
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql://postgres@/postgres?host={folder}&port={_PORT}"
        finally:
            run(_as_server_user([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
