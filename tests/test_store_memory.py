"""Store behaviour that needs a scripted server: pagination at S3's 1,000-key page, 409
retries, 404- vs 412-style servers, SDK self-conflicts. Runs on the in-memory client."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from s3store import AsyncS3SessionStore, codec
from s3store._async.client import AsyncMemoryObjectClient
from s3store.errors import (
    AlreadyExistsError,
    ConditionalRequestConflictError,
    ConflictError,
    PreconditionFailedError,
)
from s3store.testing import MemoryBackend
from s3store.types import IfMatch, PutResult, md5_etag
from tests import helpers


class ScriptedClient(AsyncMemoryObjectClient):
    """An in-memory client whose next PUTs fail as scripted, after optionally landing."""

    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__("scripted", backend=backend)
        self.script: list[tuple[str, bool]] = []

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        conditions: dict[str, Any] = {
            "if_none_match": if_none_match,
            "if_match": if_match,
            "metadata": metadata,
        }
        if self.script:
            failure, lands = self.script.pop(0)
            if lands:
                await super().put(key, body, **conditions)
            if failure == "409":
                raise ConditionalRequestConflictError("409", bucket=self.bucket, key=key)
            if failure == "retried-412":
                # What a client sees when a re-send of a write that had landed hits 412.
                error: ConflictError = AlreadyExistsError(
                    "412 after retry", bucket=self.bucket, key=key
                )
                if if_match is not None:
                    error = PreconditionFailedError(
                        "412 after retry", bucket=self.bucket, key=key, expected_etag=if_match
                    )
                raise error
        return await super().put(key, body, **conditions)


@pytest.fixture
def scripted() -> ScriptedClient:
    return ScriptedClient(MemoryBackend())


async def test_list_paginates_past_one_thousand() -> None:
    backend = MemoryBackend()
    client = AsyncMemoryObjectClient("b", backend=backend)
    for i in range(2001):
        # Session-sized: list() skips objects small enough to be lease placeholders.
        backend.raw_put("b", f"p/s{i:05d}.json", b"{}" + b" " * 400)
    async with AsyncS3SessionStore(client=client, prefix="p") as store:
        ids = await store.list()
        assert store.stats.requests["ListObjectsV2"] == 3  # ceil(2001 / 1000)
    assert ids == [f"s{i:05d}" for i in range(2001)]


async def test_create_that_landed_then_got_a_409_is_our_success(scripted: ScriptedClient) -> None:
    async with AsyncS3SessionStore(client=scripted, prefix="p") as store:
        scripted.script = [("409", True)]
        await store.save(helpers.session("s1"), mode="create")
        assert await store.load("s1") == helpers.session("s1")


async def test_409_is_retried(scripted: ScriptedClient) -> None:
    async with AsyncS3SessionStore(client=scripted, prefix="p") as store:
        scripted.script = [("409", False), ("409", False)]
        await store.save(helpers.session("s1"), mode="create")
        assert store.stats.requests["PutObject"] == 3
        assert await store.load("s1") == helpers.session("s1")


async def test_409_retries_are_bounded(scripted: ScriptedClient) -> None:
    async with AsyncS3SessionStore(client=scripted, prefix="p", conflict_retries=2) as store:
        scripted.script = [("409", False)] * 3
        with pytest.raises(ConditionalRequestConflictError):
            await store.save(helpers.session("s1"), mode="create")


async def test_retried_create_that_landed_is_our_success(scripted: ScriptedClient) -> None:
    async with AsyncS3SessionStore(client=scripted, prefix="p") as store:
        scripted.script = [("retried-412", True)]
        result = await store.save(helpers.session("s1"), mode="create")
        assert result.etag == md5_etag(codec.dumps(helpers.session("s1")))
        # A genuine second create (no SDK retry involved) is still a conflict.
        with pytest.raises(AlreadyExistsError):
            await store.save(helpers.session("s1"), mode="create")


async def test_retried_if_match_that_landed_is_our_success(scripted: ScriptedClient) -> None:
    async with AsyncS3SessionStore(client=scripted, prefix="p") as store:
        first = await store.save(helpers.session("s1", messages=1))
        scripted.script = [("retried-412", True)]
        await store.save(helpers.session("s1", messages=2), mode=IfMatch(first.etag))
        loaded = await store.load("s1")
        assert loaded is not None
        assert len(loaded.messages) == 2


async def test_retried_create_that_lost_to_someone_else_is_a_conflict(
    scripted: ScriptedClient,
) -> None:
    async with AsyncS3SessionStore(client=scripted, prefix="p") as store:
        await store.save(helpers.session("s1", messages=5))
        scripted.script = [("retried-412", False)]
        with pytest.raises(AlreadyExistsError):
            await store.save(helpers.session("s1"), mode="create")


@pytest.mark.parametrize("status", [404, 412])
async def test_if_match_on_missing_key_is_precondition_failed(status: int) -> None:
    backend = MemoryBackend(if_match_missing_status=status)
    async with AsyncS3SessionStore(
        client=AsyncMemoryObjectClient("b", backend=backend), prefix="p"
    ) as store:
        with pytest.raises(PreconditionFailedError) as caught:
            await store.save(helpers.session("s1"), mode=IfMatch('"abc"'))
        assert caught.value.actual_etag is None
        assert caught.value.expected_etag == '"abc"'
        caps = await store.probe()
    assert caps.if_match_missing_status == status


async def test_probe_finds_missing_conditional_delete() -> None:
    backend = MemoryBackend(conditional_delete=False)
    async with AsyncS3SessionStore(
        client=AsyncMemoryObjectClient("b", backend=backend), prefix="p"
    ) as store:
        caps = await store.probe()
        assert caps.conditions_enforced
        assert not caps.conditional_delete
        # Leases still release on such servers: release is an If-Match PUT, not a DELETE.
        async with store.lease("s1", holder="a", ttl=5, renew=False):
            pass
        assert backend.keys("b") == ["p/leases/s1.json", "p/s1.json"]
        assert json.loads(backend.get("b", "p/leases/s1.json").body)["released"] is True  # type: ignore[union-attr]
        assert await store.load("s1") is None  # the placeholder is no session


async def test_error_messages_name_bucket_key_and_etags(scripted: ScriptedClient) -> None:
    async with AsyncS3SessionStore(client=scripted, prefix="p") as store:
        first = await store.save(helpers.session("s1"))
        second = await store.save(helpers.session("s1", messages=2))
        with pytest.raises(PreconditionFailedError) as caught:
            await store.save(helpers.session("s1"), mode=IfMatch(first.etag))
    message = str(caught.value)
    for part in ("bucket=scripted", "key=p/s1.json", first.etag, second.etag):
        assert part in message
