"""A throwaway PostgreSQL server: a fresh cluster in a temp folder, on a unix socket, gone after.

The tests of the PostgreSQL store and the serving benchmark (``bench/serving.py``) both need a
real server and neither may assume one is running. It lives here, beside the store it serves,
because this package is installed with the project while ``tests/`` is not: the benchmark then
runs from an installed copy too. It imports nothing beyond the standard library and starts
nothing until called.

It uses the server binaries of the Debian ``postgresql`` package (``.ci/run`` installs them).
``initdb`` refuses to run as root, so as root the cluster runs as the ``postgres`` user the
package creates. Callers decide what a missing server means: the tests skip (fail under CI),
the benchmark measures SQLite only.
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

_PORT = 54329


def server_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's versioned folder."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def throwaway_postgres(binaries: Path) -> Iterator[str]:
    """Start a cluster with the server programs in ``binaries``, yield its URL, stop it and
    delete it."""
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
