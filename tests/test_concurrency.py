"""Multi-writer guarantees against servers with atomic conditional writes.

Async only: these tests are about the server's semantics under races, which the sync API
reaches through the same generated code. moto is skipped (its conditional writes are not
atomic, so exactly-once cannot be asserted there). Sizes: 8 workers x 50 updates, and an
8-way create race over 100 rounds on the in-memory client and LocalStack; on SeaweedFS,
whose losing conditional writers wait 1-3 s on a server-side lock, the race runs 20 rounds
unless ``S3STORE_FULL=1``.
"""

from __future__ import annotations

import asyncio
import os
from functools import partial

import pytest

from s3store import AsyncS3SessionStore
from s3store.errors import AlreadyExistsError
from s3store.models import SessionData
from tests import helpers
from tests.conftest import Backend

FULL = os.environ.get("S3STORE_FULL") == "1"


def _atomic_only(backend: Backend) -> None:
    if not backend.atomic:
        pytest.skip(f"{backend.name}: conditional writes are not atomic under races")


def _append(text: str, current: SessionData | None) -> SessionData:
    assert current is not None
    return helpers.with_message(current, text)


async def test_eight_workers_fifty_updates_lose_nothing(backend: Backend, prefix: str) -> None:
    _atomic_only(backend)
    workers, updates = 8, 50
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix)) as store:
        await store.save(helpers.session("shared", messages=0))

        async def work(worker: int) -> None:
            for n in range(updates):
                await store.update("shared", partial(_append, f"{worker}-{n}"), retries=200)

        await asyncio.gather(*(work(w) for w in range(workers)))
        loaded = await store.load("shared")
    assert loaded is not None
    texts = sorted(block.text for m in loaded.messages for block in m.content)  # type: ignore[union-attr]
    assert texts == sorted(f"{w}-{n}" for w in range(workers) for n in range(updates))


async def test_eight_way_create_race_has_exactly_one_winner(backend: Backend, prefix: str) -> None:
    _atomic_only(backend)
    # SeaweedFS holds contended conditional PUTs in one-second steps: a round takes 1-3 s.
    rounds = 8 if backend.name == "seaweedfs" and not FULL else 100
    async with AsyncS3SessionStore(**backend.store_kwargs(prefix)) as store:
        for round_ in range(rounds):
            sid = f"race-{round_}"
            attempts = [
                store.save(helpers.session(sid, messages=worker + 1), mode="create")
                for worker in range(8)
            ]
            results = await asyncio.gather(*attempts, return_exceptions=True)
            winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
            losers = [r for r in results if isinstance(r, BaseException)]
            assert len(winners) == 1, results
            assert all(isinstance(r, AlreadyExistsError) for r in losers), losers
            stored = await store.load(sid)
            assert stored is not None
            assert len(stored.messages) == winners[0] + 1  # the winner's document, intact
