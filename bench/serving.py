"""Agent API under load: lookup by phone over 1,000,000 published customers.

For each store (SQLite file; PostgreSQL in a throwaway local cluster when its binaries are
installed) the benchmark:

1. fills the store with 1,000,000 synthetic customers (a context of realistic size, a phone and
   an email each) through ``ServingStore.publish``, the code path ``omnicdp publish`` uses,
   without Spark, which is not what is measured here;
2. starts the real server (``omnicdp serve``, one worker process per core) on 127.0.0.1, the
   rate limit set out of reach (its shared bucket is still written on every request);
3. sends ``GET /v1/customers/lookup/phone?phone=...`` for random customers, the phone typed as a
   person would ("+82 10-2345-6789"), from this process (the load generator runs apart from
   the server's), over keep-alive connections:
   - open loop at a fixed 1,000 requests/s for 20 s after a 5 s warm-up. Latency is measured
     from when each request was *due*, so a stalled server shows up in the percentiles
     instead of slowing the sender down;
   - closed loop at concurrency 1, 8, 32 and 128 for 8 s each: that many clients, each sending
     its next request when the last one is answered; throughput and p50/p99 per level.

Results go to ``bench/results/serving.json``: p50/p95/p99/max latency, achieved rate and errors
per store, whether p99 stays under the 10 ms target at 1,000 requests/s and under 50 ms at
concurrency 32, the time requests spent inside the app (from the server's access log) and the
machine's load average around each run: the sender shares the cores with the server, and
numbers from a busy machine are pessimistic.
Only loopback traffic; every loop is bounded by the request count.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from urllib.parse import quote

import uvloop

from serving.keys import Role, create_key
from serving.store import open_store
from serving.store.base import CUSTOMER, LOOKUP_KEY, SEGMENT
from serving.store.throwaway import server_binaries, throwaway_postgres

CUSTOMERS = 1_000_000
RATE = 1_000  # requests per second
WARMUP_S = 5
DURATION_S = 20
TARGET_P99_MS = 10.0
MAX_CONNECTIONS = 64
CONCURRENCY = (1, 8, 32, 128)
LEVEL_S = 8
TARGET_P99_MS_AT_32 = 50.0
WORKERS = os.cpu_count() or 1
PORT = 18_765
RESULTS = Path(__file__).parent / "results" / "serving.json"
_BIN = Path(sys.executable).parent
_CONTEXT = (
    json.dumps(
        {
            "display_name": "Customer {i}",
            "tier": "silver",
            "language": "ko",
            "country": "KR",
            "preferred_channel": "app",
            "lifetime_value": 123.45,
            "reporting_currency": "USD",
            "consents": ["email", "push"],
            "open_case_count": 1,
            "open_cases": [
                {
                    "case_id": "CS{i}",
                    "opened_at": "2026-11-01T09:05:00Z",
                    "last_activity_at": "2026-11-02T16:00:00Z",
                    "channel_path": ["social", "web", "call_center"],
                    "channel_history": "social -> web -> call_center",
                    "touches": 4,
                    "last_status": "callback_scheduled",
                    "reason": "complaint",
                }
            ],
            "last_interactions": [
                {
                    "channel": "call_center",
                    "ts": "2026-11-02T16:00:00Z",
                    "type": "call",
                    "status": "callback_scheduled",
                    "summary": "Call Center: call about complaint (case CS{i}: callback_scheduled)",
                }
            ],
            "failed_self_service": [],
            "recent_sentiment": -0.6,
            "next_best_action": "own_the_case",
            "next_best_action_reason": "Case CS{i} is open; social -> web -> call.",
            "as_of": "2026-11-04T00:00:00Z",
        }
    )
    .replace("{", "{{")
    .replace("}", "}}")
    .replace("{{i}}", "{i}")
)


def phone(i: int) -> tuple[str, str]:
    """Customer ``i``'s phone as typed by a person, and as silver stores it (E.164)."""
    block, line = 2000 + i // 10_000, i % 10_000
    return f"+82 10-{block:04d}-{line:04d}", f"+8210{block:04d}{line:04d}"


def _customers() -> Iterator[tuple]:
    for i in range(CUSTOMERS):
        yield (f"C{i:07d}", f"Customer {i}", "silver", 1, None, _CONTEXT.format(i=i))


def _lookup_keys() -> Iterator[tuple]:
    for i in range(CUSTOMERS):
        yield ("phone", phone(i)[1], f"C{i:07d}")
        yield ("email", f"customer{i}@example.com", f"C{i:07d}")


def fill(url: str) -> tuple[float, str]:
    """Publish the synthetic customers into the store at ``url``; seconds taken, an agent key."""
    store = open_store(url)
    started = time.monotonic()
    with store.publish() as publication:
        publication.load(CUSTOMER, _customers())
        publication.load(LOOKUP_KEY, _lookup_keys())
        publication.load(SEGMENT, [("everyone", CUSTOMERS, "email", "2026-11-04T00:00:00Z")])
    seconds = time.monotonic() - started
    key = create_key(store, Role.AGENT, "bench").key
    store.close()
    return seconds, key


def _serve(url: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "OMNICDP_SERVING_URL": url,
        "OMNICDP_SERVING_RATE_LIMIT": str(RATE * 10),  # the limit is not what is measured
        "OMNICDP_SERVING_RATE_BURST": str(RATE * 10),
    }
    command = [str(_BIN / "omnicdp"), "serve", "--host", "127.0.0.1", "--port", str(PORT)]
    command += ["--workers", str(WORKERS)]
    with log.open("w") as stderr:
        server = subprocess.Popen(command, env=env, stdout=stderr, stderr=stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/healthz", timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"the server did not start; see {log}")


class _Connections:
    """Keep-alive HTTP/1.1 connections to the server, opened on demand, at most a bound.

    The server closes a connection idle for a few seconds; a request that finds its connection
    closed is sent again on a new one, as HTTP clients do.
    """

    def __init__(self, limit: int) -> None:
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(limit)

    async def get(self, key: str, path: str) -> int:
        """Send one GET and read the whole answer; its status."""
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"
        ).encode()
        async with self._slots:
            for reuse in (True, False):
                if reuse and self._idle:
                    reader, writer = self._idle.pop()
                else:
                    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
                writer.write(request)
                status_line = await reader.readline()
                if status_line:
                    break
                writer.close()  # closed by the server while idle: try a new connection
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            self._idle.append((reader, writer))
            return status


async def _drive(key: str, seconds: float) -> dict:
    """Open-loop lookups at ``RATE`` for ``seconds``; latency from each request's due time."""
    connections = _Connections(MAX_CONNECTIONS)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    rng = random.Random(7)
    count = int(RATE * seconds)

    async def one(due: float, path: str) -> None:
        try:
            status = str(await connections.get(key, path))
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as err:
            status = type(err).__name__
        if status == "200":
            latencies.append(time.perf_counter() - due)
        else:
            errors[status] += 1

    start = time.perf_counter() + 0.1
    tasks = []
    for n in range(count):
        due = start + n / RATE
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        path = "/v1/customers/lookup/phone?phone=" + quote(phone(rng.randrange(CUSTOMERS))[0])
        tasks.append(asyncio.ensure_future(one(due, path)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return _summary(latencies, errors, count, elapsed)


async def _closed_loop(key: str, concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients for ``seconds``, each sending its next lookup when the last one
    was answered; latency from send to answer."""
    connections = _Connections(concurrency)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    rng = random.Random(concurrency)
    sent = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal sent
        while time.perf_counter() < stop:
            path = "/v1/customers/lookup/phone?phone=" + quote(phone(rng.randrange(CUSTOMERS))[0])
            started = time.perf_counter()
            sent += 1
            try:
                status = str(await connections.get(key, path))
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as err:
                status = type(err).__name__
            if status == "200":
                latencies.append(time.perf_counter() - started)
            else:
                errors[status] += 1

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return _summary(latencies, errors, sent, time.perf_counter() - began)


def _concurrency_table(key: str) -> dict[str, dict]:
    table = {}
    for concurrency in CONCURRENCY:
        load_before = os.getloadavg()[0]
        level = uvloop.run(_closed_loop(key, concurrency, LEVEL_S))
        level["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        print(f"concurrency {concurrency}: {level}", file=sys.stderr)
        table[str(concurrency)] = level
    return table


def _summary(latencies: list[float], errors: Counter[str], sent: int, elapsed: float) -> dict:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

    return {
        "requests": sent,
        "ok": len(ordered),
        "errors": dict(errors),
        "achieved_rps": round(len(ordered) / elapsed, 1),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
    }


def _in_server_ms(log: Path, after_line: int) -> dict:
    """Percentiles of the time requests spent inside the app, from the server's access log."""
    lines = log.read_text().splitlines()[after_line:]
    times = sorted(float(m.group(1)) for m in map(_ACCESS_MS.search, lines) if m)
    return {f"p{p}_ms": times[min(len(times) - 1, int(p / 100 * len(times)))] for p in (50, 99)}


_ACCESS_MS = re.compile(r"lookup/phone 200 (\d+\.\d)ms")


def run_store(name: str, url: str, workdir: Path) -> dict:
    print(f"{name}: publishing {CUSTOMERS:,} customers", file=sys.stderr)
    fill_seconds, key = fill(url)
    log = workdir / f"{name}-server.log"
    server = _serve(url, log)
    try:
        uvloop.run(_drive(key, WARMUP_S))
        print(f"{name}: {RATE} lookups/s for {DURATION_S} s", file=sys.stderr)
        warmup_lines = len(log.read_text().splitlines())
        load_before = os.getloadavg()[0]
        result = uvloop.run(_drive(key, DURATION_S))
        result["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        result["inside_app"] = _in_server_ms(log, warmup_lines)
        result["concurrency"] = _concurrency_table(key)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["publish_seconds"] = round(fill_seconds, 1)
    result["p99_target_met"] = result["p99_ms"] < TARGET_P99_MS and not result["errors"]
    at_32 = result["concurrency"]["32"]
    result["p99_at_32_target_met"] = at_32["p99_ms"] < TARGET_P99_MS_AT_32 and not at_32["errors"]
    print(f"{name}: {result}", file=sys.stderr)
    return result


def _stores(workdir: Path) -> dict[str, AbstractContextManager[str] | None]:
    sqlite = nullcontext(f"sqlite:///{workdir / 'bench.sqlite'}")
    binaries = server_binaries()
    return {"sqlite": sqlite, "postgresql": throwaway_postgres(binaries) if binaries else None}


def main() -> None:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="omnicdp-bench-") as tmp:
        for name, store in _stores(Path(tmp)).items():
            if store is None:
                results[name] = {"skipped": "PostgreSQL server binaries are not installed"}
                continue
            with store as url:
                results[name] = run_store(name, url, Path(tmp))
    report = {
        "benchmark": "GET /v1/customers/lookup/phone?phone=, open loop and closed loop",
        "customers": CUSTOMERS,
        "server_workers": WORKERS,
        "target_rps": RATE,
        "duration_s": DURATION_S,
        "target_p99_ms": TARGET_P99_MS,
        "concurrency_level_s": LEVEL_S,
        "target_p99_ms_at_concurrency_32": TARGET_P99_MS_AT_32,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "niceness": os.nice(0),  # sender and server; negative when run with priority
        },
        "stores": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {RESULTS}", file=sys.stderr)
