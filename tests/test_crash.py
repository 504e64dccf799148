"""Crash consistency: a writer killed with SIGKILL at random points, and an in-process soak
with injected crashes, always leave the last durable generation loadable and the store sound.

After every crash a fresh store must load a session whose generation is at least the last
one the writer acknowledged and at most one more; the manifest and trace events may be one
generation ahead (they are written before the session), never behind; no manifest points at
a missing blob; fsck finds nothing but unreferenced blobs, which ``gc(grace=0)`` removes.

Default: 8 kills on one server, a 40-generation soak in memory and 15 on servers;
``S3STORE_FULL=1``: 50 kills per server and 400 generations everywhere. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aioboto3
import pytest

from s3store import AsyncS3SessionStore
from s3store._async.client import AsyncBotoObjectClient, AsyncMemoryObjectClient
from s3store.config import StoreSettings
from s3store.reports import GcReport
from s3store.types import Capabilities
from tests import crash_worker
from tests.conftest import BUCKET, REGION, Backend
from tests.faultproxy import open_server, real_server_names

FULL = os.environ.get("S3STORE_FULL") == "1"
SEED = 424242
ROOT = Path(__file__).resolve().parent.parent
ENFORCED = Capabilities(True, True, True, None)
LINE_TIMEOUT = 60.0


@pytest.fixture(params=real_server_names() if FULL else real_server_names()[-1:])
def server(request: pytest.FixtureRequest) -> Backend:
    """Kill tests run on one real server by default (SeaweedFS), on every one in full."""
    return open_server(request, request.param)


async def check_durable(store: AsyncS3SessionStore, sid: str, acked: int) -> dict[str, int]:
    """The invariants after a crash; returns the loaded generation and the gc figures."""
    session = await store.load(sid)
    generation = 0 if session is None else len(session.messages)
    assert acked <= generation <= acked + 1, (acked, generation)
    if session is not None:
        assert session == crash_worker.session_at(sid, generation)
    artifacts = await store.load_artifacts(sid)  # IntegrityError if a blob were missing
    if artifacts is not None:
        ahead = crash_worker.generation_of_artifacts(artifacts)
        assert generation <= ahead <= generation + 1
        assert artifacts == crash_worker.artifacts_at(ahead)
    traces = await store.load_trace_events(sid)
    if traces is not None:
        assert generation <= traces[0].duration_ms <= generation + 1
    report = await store.fsck()
    assert report.ok, report.problems
    unreferenced = len(report.unreferenced_blobs)
    collected = 0
    if unreferenced:
        # gc compares Last-Modified with the server's Date header, both whole seconds: a
        # blob from the last second or two is "young" (see drain_gc).
        gc = await quick_gc(store)
        assert gc.deleted + gc.kept_young == unreferenced
        again = await store.fsck()
        assert again.ok
        assert len(again.unreferenced_blobs) == gc.kept_young
        collected = gc.deleted
    return {"generation": generation, "collected": collected}


async def quick_gc(store: AsyncS3SessionStore) -> GcReport:
    """gc with a one-second grace: its floor lowered, as only dead writers used this bucket."""
    store.settings = store.settings.with_(gc_grace_floor=1.0, blob_reuse_window=0.5)
    return await store.gc(grace=timedelta(seconds=1), allow_no_manifests=True)


async def drain_gc(store: AsyncS3SessionStore) -> int:
    """gc (1 s grace) until no unreferenced blob is left (a few seconds of server clock)."""
    deadline = time.monotonic() + 10
    deleted = 0
    while (await store.fsck()).unreferenced_blobs:
        assert time.monotonic() < deadline, "gc never collected the last blobs"
        deleted += (await quick_gc(store)).deleted
        await asyncio.sleep(0.05)
    return deleted


# -- real processes, SIGKILL ----------------------------------------------------------------


class Worker:
    """A crash_worker process and a thread that queues its stdout lines."""

    def __init__(self, endpoint: str, prefix: str, sid: str) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.crash_worker",
            f"--endpoint={endpoint}",
            f"--bucket={BUCKET}",
            f"--prefix={prefix}",
            f"--session={sid}",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode().strip())
        self.lines.put(None)

    def next_line(self) -> str:
        line = self.lines.get(timeout=LINE_TIMEOUT)
        if line is None:
            assert self.process.stderr is not None
            raise AssertionError(f"worker exited: {self.process.stderr.read().decode()[-3000:]}")
        return line

    def kill(self) -> list[str]:
        """SIGKILL (by PID), reap, and return the lines printed before it died."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reader.join()
        rest: list[str] = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return rest


def _acked(lines: list[str], acked: int) -> int:
    for line in lines:
        if line.startswith("ack "):
            acked = int(line.split()[1])
    return acked


@pytest.mark.s3
@pytest.mark.slow
async def test_sigkill_at_random_points(server: Backend, prefix: str) -> None:
    kills = 50 if FULL else 8
    rng = random.Random(SEED)
    sid = "crashy"
    started = time.monotonic()
    phases: Counter[str] = Counter()
    collected = 0
    acked = 0
    async with AsyncS3SessionStore(**server.store_kwargs(prefix)) as store:
        for _ in range(kills):
            worker = Worker(str(server.endpoint), prefix, sid)
            try:
                ready = worker.next_line()
                assert ready.startswith("ready ")
                resumed = int(ready.split()[1])
                acked = resumed
                # Kill after a random number of progress lines (4 per generation), then a
                # random few milliseconds more, so kills land inside every step's request.
                seen = [worker.next_line() for _ in range(rng.randint(0, 11))]
                acked = _acked(seen, acked)
                with pytest.raises(subprocess.TimeoutExpired):
                    worker.process.wait(timeout=rng.uniform(0, 0.03))
            finally:
                rest = worker.kill()
            seen += rest
            acked = _acked(seen, acked)
            last = (seen or [ready])[-1]
            phases[
                last.split()[0] + (f" {last.split()[1]}" if last.startswith("step") else "")
            ] += 1
            figures = await check_durable(store, sid, acked)
            collected += figures["collected"]
            # What a fresh store loaded is durable from now on: no later reload may go back.
            acked = figures["generation"]
        collected += await drain_gc(store)
    print(
        f"\n[crash {server.name}] kills={kills} generation={acked} blobs_collected={collected} "
        f"last_line_before_kill={dict(phases)} seconds={time.monotonic() - started:.1f}"
    )
    assert acked >= kills // 2


# -- in-process soak: crashes injected at the object-client seam ---------------------------


class Crashed(Exception):
    """The simulated process death."""


class CrashingClient:
    """Wraps an object client; request number ``crash_at`` "kills the process", before or
    after the server applied it. Afterwards every request fails (the process is gone)."""

    def __init__(self, inner: Any, crash_at: int | None, after: bool) -> None:
        self.inner = inner
        self.bucket: str = inner.bucket
        self.crash_at = crash_at
        self.after = after
        self.requests = 0
        self.dead = False

    def describe(self) -> dict[str, str]:
        result: dict[str, str] = self.inner.describe()
        return result

    async def close(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name.startswith("_") or not callable(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise Crashed(f"{name} after the crash")
            self.requests += 1
            hit = self.requests == self.crash_at
            if hit and not self.after:
                self.dead = True
                raise Crashed(f"before {name}")
            result = await method(*args, **kwargs)
            if hit:
                self.dead = True
                raise Crashed(f"after {name}")
            return result

        return call


@asynccontextmanager
async def inner_client(backend: Backend) -> AsyncIterator[Any]:
    if backend.memory is not None:
        yield AsyncMemoryObjectClient(BUCKET, backend=backend.memory, create=False)
        return
    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=backend.endpoint, region_name=REGION) as raw:
        yield AsyncBotoObjectClient(raw, StoreSettings(bucket=BUCKET))


async def _generations(
    store: AsyncS3SessionStore, sid: str, start: int, until: int, on_ack: Callable[[int], None]
) -> None:
    for generation in range(start + 1, until + 1):
        await store.save_artifacts(sid, crash_worker.artifacts_at(generation))
        await store.save_trace_events(sid, crash_worker.traces_at(generation))
        await store.save(crash_worker.session_at(sid, generation))
        on_ack(generation)


async def _survive(step: Callable[[], Awaitable[None]], client: CrashingClient) -> bool:
    """Run ``step``; True if it crashed (only simulated crashes are allowed)."""
    try:
        await step()
    except Exception:
        if not client.dead:
            raise
        return True
    return False


@pytest.mark.slow
async def test_soak_reload_last_durable_generation(backend: Backend, prefix: str) -> None:
    """Upstream's persistence soak, with crashes: 40 generations in memory and 15 on servers
    (full: 400 everywhere); every writer
    "dies" at a random request among its first 25, before or after the request applied."""
    generations = 400 if FULL else (40 if backend.memory is not None else 15)
    rng = random.Random(SEED)
    sid = "soak"
    acked = 0
    crashes: Counter[str] = Counter()
    started = time.monotonic()
    async with (
        inner_client(backend) as inner,
        AsyncS3SessionStore(**backend.store_kwargs(prefix)) as direct,
    ):
        while acked < generations:
            crash_at = rng.randint(1, 25)
            client = CrashingClient(inner, crash_at, after=rng.random() < 0.5)
            store = AsyncS3SessionStore(
                client=client, bucket=BUCKET, prefix=prefix, capabilities=ENFORCED
            )

            def ack(generation: int) -> None:
                nonlocal acked
                acked = generation

            async def restart_and_write(store: AsyncS3SessionStore = store) -> None:
                current = await store.load(sid)
                resumed = 0 if current is None else len(current.messages)
                await _generations(store, sid, resumed, generations, ack)

            if await _survive(restart_and_write, client):
                crashes["after" if client.after else "before"] += 1
            figures = await check_durable(direct, sid, acked)
            acked = figures["generation"]
        await drain_gc(direct)
    print(
        f"\n[soak {backend.name}] generations={generations} crashes={dict(crashes)} "
        f"seconds={time.monotonic() - started:.1f}"
    )
    assert sum(crashes.values()) >= 4
