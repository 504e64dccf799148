"""The fleet simulator in the suite: bounded seeds, exact replay, and checks that can fail.

``make test`` runs ``S3STORE_SIM_SEEDS`` seeds (default 100) of every profile, about a
minute; ``make sim SEEDS=N`` runs more. A failure prints the seed, the broken invariant and
the last steps of the history, and the command that replays it.
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
from s3store.errors import OutcomeUnknownError, PreconditionFailedError
from tests.sim.fleet import PROFILES, Result, run_seed

SEEDS = int(os.environ.get("S3STORE_SIM_SEEDS", "100"))
ROOT = Path(__file__).resolve().parents[2]


def _chunks() -> Iterator[tuple[str, int]]:
    # One test per profile and block of 25 seeds: failures point at a small range.
    for profile in sorted(PROFILES):
        for start in range(0, SEEDS, 25):
            yield profile, start


@pytest.mark.parametrize(("profile", "start"), list(_chunks()))
def test_invariants_hold(profile: str, start: int) -> None:
    failed: list[Result] = []
    for seed in range(start, min(start + 25, SEEDS)):
        result = run_seed(seed, profile)
        # On servers that ignore conditions most operations are refused: fewer requests.
        assert result.steps > 20, f"seed {seed} {profile}: the history barely ran"
        if not result.ok:
            failed.append(result)
    assert not failed, "\n\n".join(r.report() for r in failed[:3])


def test_a_seed_replays_exactly() -> None:
    first, again = run_seed(7, "lossy"), run_seed(7, "lossy")
    assert first.digest == again.digest
    assert run_seed(8, "lossy").digest != first.digest


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


def test_histories_exercise_the_faults_and_gc() -> None:
    totals: dict[str, int] = {}
    for seed in range(20):
        for name, count in run_seed(seed, "default").stats.items():
            totals[name] = totals.get(name, 0) + count
    for exercised in (
        "gc deleted a blob",
        "blob re-uploads (freshen)",
        "answers lost",
        "nemesis kill",
        "nemesis pause",
        "changes acked",
    ):
        assert totals.get(exercised, 0) > 0, (exercised, totals)


# -- the checks can fail: each reintroduces a fixed defect and expects the simulator to see it


def _first_violation(profile: str, prefix: str, seeds: int = 60) -> str | None:
    for seed in range(seeds):
        for violation in run_seed(seed, profile).violations:
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
