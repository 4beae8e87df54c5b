"""Several API workers: a key's rate limit holds across them, and ``omnicdp serve --workers``.

Every worker of one server takes tokens from the same buckets, kept in one SQLite file
(``serving.keys.SharedRateLimiter``): a key cannot get N times its limit by landing on N
workers. First two apps in this process over one bucket file, then the real command with two
worker processes.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from schemas.settings import Settings
from serving.api import create_app
from serving.keys import Role, create_key
from serving.store import open_store
from tests.test_api_contract import _published

REPO = Path(__file__).resolve().parents[1]
OMNICDP = Path(sys.executable).parent / "omnicdp"
BURST = 5


def published_settings(tmp_path: Path, **changes: object) -> Settings:
    settings = Settings(lakehouse=tmp_path / "lakehouse", **changes)
    store = open_store(settings.resolved_serving_url)
    _published(store)
    store.close()
    return settings


def test_workers_share_one_bucket_per_key(tmp_path: Path) -> None:
    settings = published_settings(
        tmp_path,
        serving_rate_limit=0.001,  # no refill within the test
        serving_rate_burst=BURST,
        serving_rate_state=tmp_path / "buckets.sqlite",
    )
    store = open_store(settings.resolved_serving_url)
    key = {"Authorization": f"Bearer {create_key(store, Role.AGENT).key}"}
    workers = [TestClient(create_app(settings, store)) for _ in range(2)]

    statuses = [workers[i % 2].get("/v1/customers/C1", headers=key).status_code for i in range(8)]

    assert statuses == [200] * BURST + [429] * 3  # five in all, not five per worker
    other = {"Authorization": f"Bearer {create_key(store, Role.AGENT).key}"}
    assert workers[1].get("/v1/customers/C1", headers=other).status_code == 200
    store.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_with_two_workers_holds_the_limit_across_them(tmp_path: Path) -> None:
    """The command's workers are real processes; forty requests at once from eight threads
    land on both, and five get through, as from one."""
    settings = published_settings(tmp_path)
    store = open_store(settings.resolved_serving_url)
    key = create_key(store, Role.AGENT).key
    store.close()
    port, log = free_port(), tmp_path / "server.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OMNICDP_")},
        "PYTHONPATH": str(REPO),  # this checkout's serving package
        "OMNICDP_LAKEHOUSE": str(settings.lakehouse),
        "OMNICDP_SERVING_RATE_LIMIT": "0.001",
        "OMNICDP_SERVING_RATE_BURST": str(BURST),
    }
    command = [str(OMNICDP), "serve", "--port", str(port), "--workers", "2"]
    with log.open("w") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=output)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_both_workers_answer(base, server, log)

        def fetch(_: int) -> int:
            with httpx.Client() as client:  # a new connection each time: any worker may take it
                response = client.get(
                    f"{base}/v1/customers/C1", headers={"Authorization": f"Bearer {key}"}
                )
                return response.status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = Counter(pool.map(fetch, range(40)))
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert statuses == {200: BURST, 429: 40 - BURST}
    served_by = set(re.findall(r"\[(\d+)\]: GET /v1/customers/\{customer_id\} ", log.read_text()))
    assert len(served_by) == 2, log.read_text()[-2000:]


def _wait_until_both_workers_answer(base: str, server: subprocess.Popen, log: Path) -> None:
    """Both workers are up once /healthz answered from two processes (within 60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()
        try:
            with httpx.Client() as client:
                client.get(f"{base}/healthz")
        except httpx.TransportError:
            pass
        if len(set(re.findall(r"\[(\d+)\]: GET /healthz ", log.read_text()))) == 2:
            return
        time.sleep(0.1)
    raise AssertionError(f"two workers did not answer: {log.read_text()[-2000:]}")
