"""The fleet simulator in the suite: bounded seeds, exact replay, and checks that can fail.

``make test`` runs ``S3STORE_SIM_SEEDS`` seeds (default 60) of every profile and
``S3STORE_SIM_OBSTORE_SEEDS`` (default 25) with the stores on the obstore client
(``transport="obstore"``), about a minute and a half; ``make sim SEEDS=N`` runs more of
both. A failure prints the seed, the broken invariant and the last steps of the history, and
the command that replays it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3store._async import lease as lease_module
from s3store._async import store as store_module
from s3store.config import StoreSettings
from s3store.errors import OutcomeUnknownError, PreconditionFailedError
from tests.sim.fleet import PROFILES, Result, run_seed

SEEDS = int(os.environ.get("S3STORE_SIM_SEEDS", "60"))
OBSTORE_SEEDS = int(os.environ.get("S3STORE_SIM_OBSTORE_SEEDS", "25"))
ROOT = Path(__file__).resolve().parents[2]


def _chunks() -> Iterator[tuple[str, str, int]]:
    # One test per transport, profile and block of 25 seeds: failures point at a small range.
    for transport, seeds in (("boto", SEEDS), ("obstore", OBSTORE_SEEDS)):
        for profile in sorted(PROFILES):
            for start in range(0, seeds, 25):
                yield transport, profile, start


@pytest.mark.parametrize(("transport", "profile", "start"), list(_chunks()))
def test_invariants_hold(transport: str, profile: str, start: int) -> None:
    if transport == "obstore":
        pytest.importorskip("obstore")
    seeds = OBSTORE_SEEDS if transport == "obstore" else SEEDS
    failed: list[Result] = []
    for seed in range(start, min(start + 25, seeds)):
        result = run_seed(seed, profile, transport)
        # On servers that ignore conditions most operations are refused: fewer requests.
        assert result.steps > 20, f"seed {seed} {profile}: the history barely ran"
        if not result.ok:
            failed.append(result)
    assert not failed, "\n\n".join(r.report() for r in failed[:3])


def test_a_seed_replays_exactly() -> None:
    first, again = run_seed(7, "lossy"), run_seed(7, "lossy")
    assert first.digest == again.digest
    assert run_seed(8, "lossy").digest != first.digest


def test_a_seed_replays_exactly_on_obstore() -> None:
    pytest.importorskip("obstore")
    first, again = run_seed(7, "lossy", "obstore"), run_seed(7, "lossy", "obstore")
    assert first.digest == again.digest
    assert run_seed(8, "lossy", "obstore").digest != first.digest
    # The other transport sends other requests (listing, DeleteObjects, the clock's HEAD).
    assert run_seed(7, "lossy").digest != first.digest


def test_replay_does_not_depend_on_hash_randomisation() -> None:
    script = "from tests.sim.fleet import run_seed; print(run_seed(7, 'lossy').digest)"
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    assert digests == {run_seed(7, "lossy").digest}


# What 20 default histories must have exercised, per transport. On obstore the client cannot
# send If-Match on DELETE: the store's probe sees it and gc refuses, so no blob is deleted.
_EXERCISED = {
    "boto": ("gc deleted a blob", "blob re-uploads (freshen)"),
    "obstore": ("changes unknown", "server clock reads", "gc refused (no conditional delete)"),
}
_NEVER = {"boto": (), "obstore": ("gc deleted a blob",)}


@pytest.mark.parametrize("transport", ["boto", "obstore"])
def test_histories_exercise_the_faults_and_gc(transport: str) -> None:
    if transport == "obstore":
        pytest.importorskip("obstore")
    totals: dict[str, int] = {}
    for seed in range(20):
        for name, count in run_seed(seed, "default", transport).stats.items():
            totals[name] = totals.get(name, 0) + count
    common = ("answers lost", "nemesis kill", "nemesis pause", "changes acked")
    for exercised in (*common, *_EXERCISED[transport]):
        assert totals.get(exercised, 0) > 0, (exercised, totals)
    for absent in _NEVER[transport]:
        assert totals.get(absent, 0) == 0, (absent, totals)


# -- the checks can fail: each reintroduces a fixed defect and expects the simulator to see it


def _first_violation(
    profile: str, prefix: str, seeds: int = 60, transport: str = "boto"
) -> str | None:
    for seed in range(seeds):
        for violation in run_seed(seed, profile, transport).violations:
            if violation.startswith(prefix):
                return violation
    return None


def test_finds_a_writer_trusting_stale_blob_knowledge(monkeypatch: pytest.MonkeyPatch) -> None:
    # 13.1: reuse any known blob, however old (the 1-hour wall-clock cache of before).
    monkeypatch.setattr(
        store_module.AsyncS3SessionStore, "_reusable", lambda self, known: known is not None
    )
    assert _first_violation("default", "inv1-no-dangling-reference")


def test_finds_update_applying_a_change_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # 14.4 as it was: only the current version's token counts as "ours", and an unknown
    # outcome is reported as a plain conflict, so update() runs fn again.
    original = store_module.AsyncS3SessionStore._put
    monkeypatch.setattr(
        store_module,
        "_lists_token",
        lambda current, token: (
            getattr(current, "metadata", {}).get(store_module.WRITE_TOKEN) == token
        ),
    )

    async def guessing_put(self: Any, key: str, body: bytes, mode: Any = "overwrite") -> Any:
        try:
            return await original(self, key, body, mode)
        except OutcomeUnknownError as exc:
            raise PreconditionFailedError(
                "guessed", bucket=self.bucket, key=key, expected_etag=None
            ) from exc

    monkeypatch.setattr(store_module.AsyncS3SessionStore, "_put", guessing_put)
    assert _first_violation("lossy", "inv3-applied-once")


def test_finds_conditions_sent_to_a_server_that_ignores_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 14.3: conditional delete without asking the probe.
    async def no_check(self: Any, key: str) -> None:
        return None

    monkeypatch.setattr(store_module.AsyncS3SessionStore, "_require_conditional_delete", no_check)
    assert _first_violation("no-conditional-delete", "inv5-condition-ignored")


def test_finds_a_journal_lease_holder_appending_past_a_newer_fence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Journal leases: append under the lease without checking that the state before the
    # delta carries this acquisition's fence (a fenced-out holder re-reads after its seq
    # was taken, and writes on top of the newer holder's fence).
    async def no_check(self: Any, fence: Any, cause: BaseException) -> None:
        return None

    monkeypatch.setattr(lease_module.AsyncLease, "_refuse_journal", no_check)
    assert _first_violation("journal-leases", "inv4-fenced-holder-refused")


def test_finds_the_obstore_client_dropping_a_condition(monkeypatch: pytest.MonkeyPatch) -> None:
    # The obstore client sends the store's conditional writes as plain PUTs. Only those that
    # carry the store's write token: the capability probe writes none, so it still finds
    # the conditions enforced and the store keeps relying on them.
    pytest.importorskip("obstore")
    from s3store import _obstore

    original = _obstore.AsyncObstoreObjectClient.put

    async def unconditional(
        self: Any,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Any = None,
    ) -> Any:
        if metadata and store_module.WRITE_TOKEN in metadata:
            if_none_match, if_match = False, None
        return await original(
            self, key, body, if_none_match=if_none_match, if_match=if_match, metadata=metadata
        )

    monkeypatch.setattr(_obstore.AsyncObstoreObjectClient, "put", unconditional)
    assert _first_violation("default", "inv4", seeds=10, transport="obstore")


# -- the obstore wire's fidelity: its exceptions mean what the real ones mean to the client


def _fake_exceptions() -> dict[str, BaseException]:
    """The fake's exception for each RECORDED case, built as the wire builds it."""
    from s3store._memory import MemoryBackend
    from tests.sim.obstore_wire import RECORDED, SimS3Store, _exception, _Refused, _Request
    from tests.sim.world import Attempt, Faults, World

    world = World(0, Faults(), MemoryBackend(), "sim")
    store = SimS3Store(world, None, StoreSettings(bucket="sim", max_attempts=3))

    def request(method: str, path: str, **kw: Any) -> _Request:
        query = "delete" if method == "POST" else ""
        return _Request("op", method, path, store.url("" if query else path, query), **kw)

    def ended(
        req: _Request, kind: str, value: Any = None, attempts: int = 1, as_: str = "500"
    ) -> BaseException:
        return _exception(store, req, Attempt("op", req.path, kind, value, attempts, 0.01), as_)

    def refused(status: int, code: str) -> _Refused:
        return _Refused(status, code, bucket="sim", key="k")

    create = {"mode": "create", "idempotent": False, "mutating": True}
    update = {"mode": "update", "idempotent": False, "mutating": True}
    fake = {
        "GET missing": ended(request("GET", "nope/x.json"), "error", refused(404, "NoSuchKey")),
        "HEAD missing": ended(request("HEAD", "nope/x.json"), "error", refused(404, "NoSuchKey")),
        "create on an existing key": ended(
            request("PUT", "a/b.json", **create), "error", refused(412, "PreconditionFailed")
        ),
        "If-Match, ETag changed": ended(
            request("PUT", "a/b.json", **update), "error", refused(412, "PreconditionFailed")
        ),
        "If-Match, key missing": ended(
            request("PUT", "a/zz.json", **update), "error", refused(404, "NoSuchKey")
        ),
        "GET If-None-Match, unchanged": ended(
            request("GET", "a/b.json"), "error", refused(304, "NotModified")
        ),
        "create answered 409": ended(request("PUT", "c/1.json", **create), "409"),
        "If-Match answered 409, 3 times": ended(
            request("PUT", "m/b.json", **update), "409", attempts=3
        ),
        "PUT answered 500, 3 times": ended(request("PUT", "c/2.json"), "fail", attempts=3),
        "create timed out (not re-sent)": ended(request("PUT", "c/4.json", **create), "timeout"),
        "GET timed out, 3 times": ended(request("GET", "a/b.json"), "timeout", attempts=3),
        "DeleteObjects reset (not re-sent)": ended(
            request("POST", "a/q", idempotent=False), "fail", as_="reset"
        ),
        "list answered 500, 3 times": ended(request("GET", "a/", listing=True), "fail", attempts=3),
        "GET signed too long ago": ended(request("GET", "a/b"), "too-old"),
    }
    assert set(fake) == set(RECORDED)
    return fake


def test_obstore_wire_errors_translate_like_the_real_ones() -> None:
    pytest.importorskip("obstore")
    from s3store._obstore import translate
    from tests.sim.obstore_wire import RECORDED

    for case, fake in _fake_exceptions().items():
        real_type, real_text = RECORDED[case]
        real = real_type(real_text)
        assert type(fake) is real_type, case
        conditions: dict[str, Any] = {}
        if "create" in case:
            conditions["if_none_match"] = True
        elif "If-Match" in case:
            conditions["if_match"] = '"e"'
        mapped = [
            translate(e, operation="op", bucket="sim", key="k", **conditions) for e in (fake, real)
        ]
        got, want = (
            (type(m), getattr(m, "code", None), m.retried, getattr(m, "status", None))
            for m in mapped
        )
        assert got == want, (case, str(fake))


def test_obstore_wire_resends_as_object_store_does() -> None:
    pytest.importorskip("obstore")
    from s3store._memory import MemoryBackend
    from tests.sim.obstore_wire import ObjectStoreSdk, SimS3Store, _Request
    from tests.sim.world import Attempt, Faults, World

    world = World(0, Faults(), MemoryBackend(), "sim")
    store = SimS3Store(world, None, StoreSettings(bucket="sim", max_attempts=3))
    get = _Request("GetObject", "GET", "k", "u")
    create = _Request("PutObject", "PUT", "k", "u", mode="create", idempotent=False)
    update = _Request("PutObject", "PUT", "k", "u", mode="update", idempotent=False)

    def again(request: _Request, kind: str, attempts: int = 1) -> bool:
        return ObjectStoreSdk(store, request).again(Attempt("op", "k", kind, None, attempts, 0.1))

    assert again(get, "timeout")
    assert not again(get, "timeout", attempts=3)  # max_attempts 3: 2 retries
    assert not again(create, "timeout")
    assert not again(update, "timeout")
    assert again(update, "409")
    assert not again(create, "409")
    assert not again(get, "error")
    assert not again(get, "too-old")
