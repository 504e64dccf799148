"""The simulator's actors and invariants, reduced and non-deterministic, on a real server.

Four workers (each its own store, so its own caches), updating shared ledgers, saving and
dropping artifacts that share contents, and a gc with a one-second grace floor, all at once
against SeaweedFS on 127.0.0.1. Bounded: 4 x 10 operations and about 15 seconds. Then a
fresh process's view is checked: every acknowledged change is there exactly once, an unknown
one at most once, a failed one not at all; fsck finds nothing missing or corrupt.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from functools import partial

import pytest

from s3store import AsyncS3SessionStore
from s3store.errors import OutcomeUnknownError, StoreError
from s3store.models import SessionData
from tests import helpers
from tests.conftest import Backend

WORKERS, OPS = 4, 10
CONTENTS = [f"shared output {n} " * 400 for n in range(4)]
QUICK_GC = {"gc_grace_floor": 1.0, "blob_reuse_window": 0.5}


def _append(marker: str, current: SessionData | None) -> SessionData:
    base = current if current is not None else helpers.session("ledger", messages=0)
    return helpers.with_message(base, marker)


@pytest.mark.s3
async def test_fleet_on_a_real_server(backend: Backend, prefix: str) -> None:
    if backend.name != "seaweedfs":
        pytest.skip("runs on SeaweedFS (atomic conditions and conditional delete)")
    outcomes: dict[str, str] = {}
    rng = random.Random()
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        async with AsyncS3SessionStore(**backend.store_kwargs(prefix, **QUICK_GC)) as store:
            for op in range(OPS):
                roll = rng.random()
                try:
                    if roll < 0.5:
                        marker = f"w{n}-{op}"
                        outcomes[marker] = "unknown"
                        try:
                            await store.update("ledger", partial(_append, marker))
                            outcomes[marker] = "acked"
                        except OutcomeUnknownError:
                            pass
                        except StoreError:
                            outcomes[marker] = "failed"
                    elif roll < 0.85:
                        picked = rng.sample(CONTENTS, rng.randint(1, 3))
                        await store.save_artifacts(
                            f"art-{rng.randint(0, 2)}", helpers.artifacts(*picked)
                        )
                    else:
                        await store.delete(f"art-{rng.randint(0, 2)}")
                except StoreError:
                    pass
                await asyncio.sleep(rng.uniform(0, 0.3))

    async def collector() -> None:
        async with AsyncS3SessionStore(**backend.store_kwargs(prefix, **QUICK_GC)) as store:
            while not stop.is_set():
                await store.gc(grace=timedelta(seconds=1), allow_no_manifests=True)
                await asyncio.sleep(0.2)

    gc_task = asyncio.create_task(collector())
    await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(WORKERS))), timeout=120)
    stop.set()
    await gc_task
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix)) as fresh:
        ledger = await fresh.load("ledger")
        report = await fresh.fsck()
        for art in ("art-0", "art-1", "art-2"):
            await fresh.load_artifacts(art)  # raises IntegrityError on a missing blob
    texts = [b.text for m in (ledger.messages if ledger else []) for b in m.content]  # type: ignore[union-attr]
    for marker, outcome in outcomes.items():
        count = texts.count(marker)
        assert count == {"acked": 1, "failed": 0}.get(outcome, count), (marker, outcome, count)
        assert count <= 1, (marker, count)
    assert report.ok, report.problems
    assert any(o == "acked" for o in outcomes.values())
