"""A fleet in a box: workers, leases, gc, fsck and readers over one simulated bucket.

``run_seed(seed)`` plays one history: every choice (which operation, which session, which
fault, how long a request travels, which process is paused or killed, how the server clock
steps) comes from the seed, so a failing seed replays exactly. The invariants it checks are
the store's promises (README, "Guarantees"); each failure names its invariant and the seed.

    python -m tests.sim --seeds 200            # seeds 0..199, every profile
    python -m tests.sim --seed 17 --profile mixed-layouts -v   # replay one, print the history
    python -m tests.sim --seeds 200 --transport obstore   # the stores on the obstore client

``transport="obstore"`` gives every store the real obstore client with only obstore's Rust
layer faked over the same wire (``tests/sim/obstore_wire.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

from s3store import codec
from s3store._async import store as store_module
from s3store._async.store import AsyncS3SessionStore
from s3store._memory import MemoryBackend
from s3store.config import StoreSettings
from s3store.errors import (
    IntegrityError,
    LeaseHeldError,
    LeaseLostError,
    OutcomeUnknownError,
    StoreError,
    UnsupportedBackendError,
)
from s3store.keys import Layout, Part
from s3store.models import (
    ArtifactStore,
    Message,
    RunRecord,
    SessionData,
    SessionSnapshotV1,
    TraceEvent,
)
from s3store.types import PutMode
from tests.sim.vloop import VirtualTimeLoop
from tests.sim.world import ACTOR, EPOCH, Faults, Process, SimClient, World

BUCKET = "sim"
PREFIX = "fleet"
TTL = 6.0
# gc's grace floor must exceed the blob reuse window + the longest stall between a writer's
# blob check and its manifest landing (pauses up to 3 ttl, retries, a request in flight up
# to max_request_age) + clock steps; FORMAT.md has the argument, this is the same at scale.
GRACE = 60.0
REUSE_WINDOW = 10.0
LEDGERS = ("ledger-0", "ledger-1")
SCRATCH = ("scratch-0", "scratch-1")
LEASED = ("leased-0", "leased-1")
ARTIFACT_SESSIONS = ("art-0", "art-1", "art-2")
HOLDERS = ("pod-a", "pod-b", "pod-c")
# v1-snapshots: sessions stored as SessionSnapshotV1 from the start; worker n saves fragment
# kind FRAGMENT_KINDS[n % 2] of SNAPSHOTS[n // 2 % 2] (one writer per member, many per
# snapshot), while any worker updates their session member (plain and under leases).
SNAPSHOTS = ("snap-0", "snap-1")
FRAGMENT_KINDS = ("traces", "artifacts")
# Journal profiles: workers append marker trace events / run records to these sessions'
# journaled sidecars (read, append one, save: a delta when the store knows the version).
TRACED = ("traced-0", "traced-1")
ARRAY_KINDS = ("traces", "runs")
# How the stores' requests reach the wire: "boto" is SimClient (botocore's retries), "obstore"
# the real AsyncObstoreObjectClient over a fake of obstore's Rust layer.
TRANSPORTS = ("boto", "obstore")


@dataclass(frozen=True)
class Profile:
    """What kind of world a history runs in."""

    name: str
    layouts: tuple[str, ...] = ("legacy",)
    ignore_conditions: bool = False
    ignore_conditional_delete: bool = False
    faults: Faults = field(default_factory=Faults)
    workers: int = 4
    ops: int = 24
    pauses: bool = True
    kills: bool = True
    clock_steps: bool = True
    gc: bool = True
    snapshots: bool = False
    journal: bool = False
    """Workers use journal mode (deltas + compaction), leased writers too."""
    lease_weight: int = 3
    """How often a worker picks a leased write (out of 18 with the default weights)."""


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("default"),
        Profile("mixed-layouts", layouts=("legacy", "v1")),
        Profile("v1", layouts=("v1",)),
        Profile("v1-snapshots", layouts=("v1",), snapshots=True),
        Profile(
            "journal",
            layouts=("legacy", "v1"),
            journal=True,
            faults=Faults(fail_before=0.04, conflict_409=0.03, lost_answer=0.06, slow=0.05),
        ),
        # Journal leases under contention: takeovers while the old holder still writes
        # (rare in "journal"), so a fenced-out holder's append is tried often.
        Profile(
            "journal-leases",
            layouts=("legacy", "v1"),
            journal=True,
            faults=Faults(fail_before=0.04, conflict_409=0.03, lost_answer=0.06, slow=0.05),
            lease_weight=12,
        ),
        Profile("no-conditional-delete", ignore_conditional_delete=True),
        Profile("ignores-conditions", ignore_conditions=True, gc=False),
        Profile(
            "lossy",
            faults=Faults(fail_before=0.08, conflict_409=0.05, lost_answer=0.10, slow=0.08),
        ),
    )
}


def _session(id: str) -> SessionData:
    return codec.loads(SessionData, _FIXTURE).model_copy(update={"id": id, "messages": []})


def _with_marker(data: SessionData | None, *, id: str, marker: str) -> SessionData:
    base = data if data is not None else _session(id)
    message = Message.model_validate(
        {"role": "user", "content": [{"type": "text", "text": marker}]}
    )
    return base.model_copy(update={"messages": [*base.messages, message]})


def _artifacts(contents: list[str]) -> ArtifactStore:
    entries = [
        {
            "artifact_id": f"tool-output:bash:{index:064x}",
            "artifact_uri": f"a3s://tool-output/bash/{index:064x}",
            "tool_name": "bash",
            "content": content,
            "original_bytes": len(content.encode()),
            "shown_bytes": len(content.encode()),
        }
        for index, content in enumerate(contents)
    ]
    return ArtifactStore.model_validate({"artifacts": entries, "retained_uris": []})


CONTENTS = tuple(f"shared tool output #{n} " + "x" * (40 + n) for n in range(6))


@dataclass
class AppendOp:
    """One read-append-save of a journaled sidecar: its marker element, what its writer was
    told, and when it started (before the read) and was acknowledged (virtual seconds;
    infinity while unknown: a killed or unknown write may still land)."""

    marker: str
    outcome: str = "unknown"
    start: float = 0.0
    end: float = float("inf")


@dataclass
class MarkerOutcome:
    """One change (a unique message text) and what its writer was told."""

    marker: str
    key: str
    outcome: str  # "acked", "unknown" (OutcomeUnknownError or killed), "failed"


class Fleet:
    """One history: the world, its processes, and what every actor was told."""

    def __init__(self, seed: int, profile: Profile, transport: str = "boto") -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
        self.seed = seed
        self.profile = profile
        self.transport = transport
        backend = MemoryBackend(
            ignore_conditions=profile.ignore_conditions,
            ignore_conditional_delete=profile.ignore_conditional_delete,
        )
        backend.create_bucket(BUCKET)
        self.backend = backend
        self.world = World(seed, profile.faults, backend, BUCKET)
        self.rng = self.world.rng
        self.markers: list[MarkerOutcome] = []
        # (session, fragment kind) -> [(marker, outcome)] in the order they were started.
        self.fragments: dict[tuple[str, str], list[tuple[str, str]]] = {}
        # (sidecar document key, id, kind) -> its journaled appends, in start order.
        self.appends: dict[tuple[str, str, str], list[AppendOp]] = {}
        self.untyped: list[str] = []
        self.lease_events: dict[str, int] = {}
        self.counter = 0
        self.stores: list[AsyncS3SessionStore] = []

    # -- plumbing ------------------------------------------------------------------------

    def client_for(self, process: Process | None) -> Any:
        """The object client of ``process``'s stores on this history's transport; None is the
        quiet network of set-up and final checks (no faults, not recorded)."""
        if self.transport == "boto":
            return SimClient(self.world, process) if process else _quiet_client(self.backend)
        from tests.sim import obstore_wire

        # The quiet stores get an endpoint of their own: the probe result is cached per
        # endpoint, and the workers must probe over the faulty wire, not inherit it.
        endpoint = f"http://sim-{self.seed}" + ("" if process else "-quiet")
        settings = StoreSettings(
            bucket=BUCKET,
            endpoint_url=endpoint,
            region_name="sim",
            read_timeout=self.profile.faults.read_timeout,
            max_attempts=self.profile.faults.max_attempts,
            max_concurrency=4,
        )
        return obstore_wire.client(self.world, process, settings)

    def store_for(
        self, process: Process, layout: str, *, journal: bool | None = None
    ) -> AsyncS3SessionStore:
        journaled = self.profile.journal if journal is None else journal
        extra: dict[str, Any] = {"journal": True, "journal_compact_every": 3} if journaled else {}
        store = AsyncS3SessionStore(
            BUCKET,
            PREFIX,
            client=self.client_for(process),
            layout=layout,  # type: ignore[arg-type]
            inline_threshold=16,
            max_concurrency=4,
            read_timeout=self.profile.faults.read_timeout,
            **_sim_settings(),
            **extra,
        )
        self.stores.append(store)
        return store

    def marker(self, who: str) -> str:
        self.counter += 1
        return f"mk-{who}-{self.counter}"

    def bump(self, event: str) -> None:
        self.lease_events[event] = self.lease_events.get(event, 0) + 1

    def note(self, marker: str, key: str, outcome: str) -> None:
        self.markers.append(MarkerOutcome(marker, key, outcome))

    async def guarded(self, who: str, what: str, op: Callable[[], Any]) -> Any:
        """Run one operation; any error that is not a StoreError breaks invariant 6."""
        try:
            return await op()
        except asyncio.CancelledError:
            raise
        except IntegrityError as exc:
            if exc.actual == "missing":
                self.world.checker.fail(
                    "inv1-no-dangling-reference", f"{who} {what}: reader found {exc}"
                )
            raise
        except StoreError:
            raise
        except BaseException as exc:
            self.untyped.append(f"{who} {what}: {type(exc).__name__}: {exc}")
            self.world.checker.fail(
                "inv6-typed-errors", f"{who} {what} raised {type(exc).__name__}: {exc!r:.300}"
            )
            raise StoreError("untyped") from exc

    # -- actors ----------------------------------------------------------------------------

    async def worker(self, process: Process, layout: str, ops: int) -> None:
        while ops > 0:
            generation = process.generation
            store = self.store_for(process, layout)
            try:
                while ops > 0:
                    ops -= 1
                    await self.one_op(process, store)
                    await asyncio.sleep(self.rng.uniform(0.0, 5.0))
            except asyncio.CancelledError:
                if process.generation == generation:
                    raise
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
            # Killed: the process restarts with empty caches after a while.
            await asyncio.sleep(self.rng.uniform(0.5, 5.0))

    async def one_op(self, process: Process, store: AsyncS3SessionStore) -> None:
        who = process.name
        names = ["update", "scratch", "artifacts", "drop-artifacts", "sidecar", "lease", "read"]
        # Journal profiles append to journaled sidecars more often (read, append, save).
        weights = [5, 2, 4, 1, 4 if self.profile.journal else 1, self.profile.lease_weight, 2]
        if self.profile.snapshots:
            names += ["fragment", "snap-update", "snap-lease", "snap-read"]
            weights += [8, 3, 2, 2]
        choice = self.rng.choices(names, weights=weights)[0]
        with contextlib.suppress(StoreError):
            if choice == "update":
                await self.op_update(who, store, self.rng.choice(LEDGERS))
            elif choice == "scratch":
                await self.op_scratch(who, store, self.rng.choice(SCRATCH))
            elif choice == "artifacts":
                session = self.rng.choice(ARTIFACT_SESSIONS)
                picked = self.rng.sample(CONTENTS, self.rng.randint(1, 3))
                await self.guarded(
                    who, "save_artifacts", lambda: store.save_artifacts(session, _artifacts(picked))
                )
            elif choice == "drop-artifacts":
                session = self.rng.choice(ARTIFACT_SESSIONS)
                await self.guarded(who, "delete", lambda: store.delete(session))
            elif choice == "sidecar" and self.profile.journal:
                await self.op_append(who, store)
            elif choice == "sidecar":
                session = self.rng.choice(LEDGERS)
                event = TraceEvent.model_validate(_TRACE)
                await self.guarded(
                    who, "save_trace_events", lambda: store.save_trace_events(session, [event])
                )
            elif choice == "lease":
                await self.op_lease(process, store, self.rng.choice(LEASED))
            elif choice == "fragment":
                await self.op_fragment(process, store)
            elif choice == "snap-update":
                await self.op_update(who, store, self.rng.choice(SNAPSHOTS))
            elif choice == "snap-lease":
                await self.op_lease(process, store, self.rng.choice(SNAPSHOTS))
            elif choice == "snap-read":
                session = self.rng.choice(SNAPSHOTS)
                await self.guarded(who, "load_snapshot", lambda: store.load_snapshot(session))
                await self.guarded(who, "load_artifacts", lambda: store.load_artifacts(session))
            else:
                session = self.rng.choice(ARTIFACT_SESSIONS)
                await self.guarded(who, "load_artifacts", lambda: store.load_artifacts(session))
                await self.guarded(who, "load", lambda: store.load(self.rng.choice(LEDGERS)))

    async def op_update(self, who: str, store: AsyncS3SessionStore, id: str) -> None:
        marker = self.marker(who)
        key = store.layout.session_key(id)
        outcome = "unknown"
        try:
            result = await self.guarded(
                who, "update", lambda: store.update(id, partial(_with_marker, id=id, marker=marker))
            )
            self.check_acked(key, result.etag)
            outcome = "acked"
        except OutcomeUnknownError:
            outcome = "unknown"
        except StoreError:
            outcome = "failed"
        finally:
            self.note(marker, key, outcome)

    async def op_append(self, who: str, store: AsyncS3SessionStore) -> None:
        """Journal profiles: read a journaled sidecar, append one marker element, save it
        (overwrite: a delta of one element when the store knows the version)."""
        id, kind = self.rng.choice(TRACED), self.rng.choice(ARRAY_KINDS)
        marker = self.marker(who)
        key = store.layout.sidecar_key(Part(kind), id)
        op = AppendOp(marker, start=asyncio.get_running_loop().time())
        self.appends.setdefault((key, id, kind), []).append(op)
        try:
            if kind == "traces":
                events = await self.guarded(
                    who, "load_trace_events", partial(store.load_trace_events, id)
                )
                event = TraceEvent.model_validate({**_TRACE, "name": marker})
                result = await self.guarded(
                    who,
                    "save_trace_events",
                    lambda: store.save_trace_events(id, [*(events or []), event]),
                )
            else:
                records = await self.guarded(
                    who, "load_run_records", partial(store.load_run_records, id)
                )
                rec = _run_record(marker)
                result = await self.guarded(
                    who,
                    "save_run_records",
                    lambda: store.save_run_records(id, [*(records or []), rec]),
                )
            self.check_acked_sidecar(store, key, id, kind, result.etag)
            op.outcome, op.end = "acked", asyncio.get_running_loop().time()
        except OutcomeUnknownError:
            op.outcome = "unknown"
        except StoreError:
            op.outcome = "failed"

    def check_acked_sidecar(
        self, store: AsyncS3SessionStore, key: str, id: str, kind: str, etag: str
    ) -> None:
        """Invariant 2a for a journaled sidecar: seq 0 is its document's write, every later
        seq the create-only PUT of its delta."""
        incarnation, _, seq = etag.removeprefix("j:").rpartition(".")
        journal = store._journal
        assert journal is not None
        from s3store._async.journal import ARRAY_KINDS as JOURNALED

        target = (
            journal.delta_key(id, incarnation, int(seq), JOURNALED[Part(kind)]) if int(seq) else key
        )
        if not etag.startswith("j:") or not self.world.checker.applied.get(target):
            self.world.checker.fail(
                "inv2-acked-writes-applied", f"journal write {etag} to {key}, never applied"
            )

    def check_appends(self) -> None:
        """Invariants 2 and 3 for journaled sidecar appends: an acknowledged element is in the
        final array unless a concurrent read-append-save (one that read before it was
        acknowledged and wrote after it started) replaced the array; never twice; a failed
        one never."""
        checker = self.world.checker
        for (key, _id, kind), ops in self.appends.items():
            got = self.backend.get(BUCKET, key)
            items = json.loads(got.body) if got is not None else []
            found = [_marker_of(kind, item) for item in items]
            for op in ops:
                count = found.count(op.marker)
                if count > 1:
                    checker.fail("inv3-applied-once", f"{op.marker} applied {count}x in {key}")
                elif op.outcome == "failed" and count:
                    checker.fail("inv3-applied-once", f"{op.marker} failed but is in {key}")
                elif op.outcome == "acked" and not count:
                    replaced = any(
                        other is not op
                        and other.outcome != "failed"
                        and other.start < op.end
                        and other.end > op.start
                        for other in ops
                    )
                    if not replaced:
                        checker.fail(
                            "inv2-no-lost-acknowledged-write",
                            f"{op.marker} acked, gone from {key} with no concurrent writer",
                        )

    async def op_fragment(self, process: Process, store: AsyncS3SessionStore) -> None:
        """Save this worker's fragment member of its snapshot (a unique marker in it)."""
        who = process.name
        index = int(who.removeprefix("w"))
        kind = FRAGMENT_KINDS[index % len(FRAGMENT_KINDS)]
        session = SNAPSHOTS[index // len(FRAGMENT_KINDS) % len(SNAPSHOTS)]
        marker = self.marker(who)
        outcome = "unknown"
        try:
            if kind == "traces":
                event = TraceEvent.model_validate({**_TRACE, "name": marker})
                await self.guarded(
                    who, "save_trace_events", lambda: store.save_trace_events(session, [event])
                )
            else:
                # The marker stays inline (short); the shared content goes to a blob.
                contents = [marker, self.rng.choice(CONTENTS)]
                await self.guarded(
                    who,
                    "save_artifacts(snapshot)",
                    lambda: store.save_artifacts(session, _artifacts(contents)),
                )
            outcome = "acked"
        except OutcomeUnknownError:
            outcome = "unknown"
        except StoreError:
            outcome = "failed"
        finally:
            self.fragments.setdefault((session, kind), []).append((marker, outcome))

    async def create_snapshots(self) -> None:
        """Before the workers start: every SNAPSHOTS session is a snapshot (quiet network)."""
        quiet = AsyncS3SessionStore(
            BUCKET,
            PREFIX,
            client=self.client_for(None),
            layout="v1",
            inline_threshold=16,
            **_sim_settings(),
        )
        for id in SNAPSHOTS:
            await quiet.save_snapshot(
                SessionSnapshotV1.model_validate({"schema_version": 1, "session": _session(id)})
            )

    def check_fragments(self) -> None:
        """Invariants 2 and 3 for fragment saves onto a snapshot: the member holds the last
        acknowledged save, or a later one whose outcome was unknown; never a failed one."""
        checker = self.world.checker
        for (session, kind), ops in self.fragments.items():
            key = Layout(PREFIX, "v1").session_key(session)
            got = self.backend.get(BUCKET, key)
            tree = json.loads(got.body) if got is not None else {}
            if kind == "traces":
                found = {e.get("name") for e in tree.get("trace_events", [])}
            else:
                found = {str(a.get("content")) for a in tree.get("artifacts", [])}
            acked = [i for i, (_, outcome) in enumerate(ops) if outcome == "acked"]
            allowed = {
                m
                for i, (m, outcome) in enumerate(ops)
                if acked and i >= acked[-1] and (i == acked[-1] or outcome == "unknown")
            }
            if acked and not found & allowed:
                checker.fail(
                    "inv2-no-lost-acknowledged-fragment",
                    f"{session} {kind}: last acked {ops[acked[-1]][0]} lost (holds {found})",
                )
            failed = {m for m, outcome in ops if outcome == "failed"}
            if found & failed:
                checker.fail(
                    "inv3-applied-once", f"{session} {kind}: failed save applied: {found & failed}"
                )

    async def op_scratch(self, who: str, store: AsyncS3SessionStore, id: str) -> None:
        roll = self.rng.random()
        if roll < 0.5:
            mode: PutMode = self.rng.choice(["overwrite", "create"])
            marker = self.marker(who)
            result = await self.guarded(
                who, "save", lambda: store.save(_with_marker(None, id=id, marker=marker), mode=mode)
            )
            self.check_acked(store.layout.session_key(id), result.etag)
        elif roll < 0.75:
            current = await self.guarded(who, "load_versioned", lambda: store.load_versioned(id))
            if current is not None:
                await self.guarded(
                    who, "delete(if_match)", lambda: store.delete(id, if_match=current.etag)
                )
        else:
            await self.guarded(who, "delete", lambda: store.delete(id))

    async def op_lease(self, process: Process, store: AsyncS3SessionStore, id: str) -> None:
        who = process.name
        holder = self.rng.choice(HOLDERS)
        key = store.layout.session_key(id)
        writes = self.rng.randint(1, 3)
        try:
            async with store.lease(id, holder=holder, ttl=TTL) as lease:
                self.world.checker.acquired(key, lease.epoch)
                self.bump("leases acquired")
                for _ in range(writes):
                    marker = self.marker(who)
                    outcome = "unknown"
                    try:
                        result = await self.guarded(
                            who,
                            "update(lease)",
                            partial(self.leased_write, store, lease, id, marker),
                        )
                        self.check_acked(key, result.etag)
                        outcome = "acked"
                    except OutcomeUnknownError:
                        outcome = "unknown"
                    except (LeaseLostError, LeaseHeldError):
                        outcome = "failed"
                        self.bump("leased writes refused (lease lost)")
                        raise
                    except StoreError:
                        outcome = "failed"
                    finally:
                        self.note(marker, key, outcome)
                    await asyncio.sleep(self.rng.uniform(0.0, TTL / 2))
        except (LeaseHeldError, LeaseLostError):
            return

    async def leased_write(
        self, store: AsyncS3SessionStore, lease: Any, id: str, marker: str
    ) -> Any:
        return await store.update(id, partial(_with_marker, id=id, marker=marker), lease=lease)

    async def gc_actor(self, process: Process, layout: str, until: Callable[[], bool]) -> None:
        store = self.store_for(process, layout)
        while not until():
            await asyncio.sleep(self.rng.uniform(3.0, 20.0))
            try:
                await self.guarded("gc", "gc", lambda: store.gc(grace=timedelta(seconds=GRACE)))
            except UnsupportedBackendError as exc:
                # Expected where DELETE ignores If-Match (and on the obstore transport, which
                # cannot send it): counted, so a history that never collected can be told.
                if "conditional delete refused" in str(exc):
                    self.bump("gc refused (no conditional delete)")
            except StoreError:
                pass

    async def nemesis(self, processes: list[Process], until: Callable[[], bool]) -> None:
        p = self.profile
        while not until():
            await asyncio.sleep(self.rng.uniform(2.0, 12.0))
            roll = self.rng.random()
            victim = self.rng.choice(processes)
            if roll < 0.4 and p.pauses:
                length = self.rng.uniform(TTL * 0.5, TTL * 3)
                victim.paused_until = max(victim.paused_until, World.now() + length)
                self.world.record("nemesis", "pause", victim.name, f"{length:.2f}s", "ok")
            elif roll < 0.6 and p.kills:
                victim.kill()
                self.world.record("nemesis", "kill", victim.name, "", "ok")
                for task in list(_TASKS.get(victim.name, ())):
                    task.cancel()
            elif roll < 0.75 and p.clock_steps:
                self.world.step_clock(
                    self.rng.choice([self.rng.uniform(0, 5), -self.rng.uniform(0, 1)])
                )

    # -- checks ----------------------------------------------------------------------------

    async def compact_all(self) -> None:
        """Journal profile: fold every session's deltas (quiet network) before the final
        checks read the documents; the folded document must equal the journal's view."""
        for layout in self.profile.layouts:
            quiet = AsyncS3SessionStore(
                BUCKET,
                PREFIX,
                client=self.client_for(None),
                layout=layout,  # type: ignore[arg-type]
                inline_threshold=16,
                journal=True,
                **_sim_settings(),
            )
            for id in (*LEDGERS, *SCRATCH, *LEASED):
                try:
                    before = await quiet.load(id)
                    await quiet.compact(id)
                except StoreError as exc:
                    self.world.checker.fail("inv7-journal-compacts", f"{layout} {id}: {exc}")
                    continue
                got = self.backend.get(BUCKET, quiet.layout.session_key(id))
                if before is not None and (got is None or got.body != codec.dumps(before)):
                    self.world.checker.fail(
                        "inv7-journal-compacts", f"{layout} {id}: folded document differs"
                    )
            for id in TRACED:
                for kind in ARRAY_KINDS:
                    try:
                        loaded: Any = await (
                            quiet.load_trace_events(id)
                            if kind == "traces"
                            else quiet.load_run_records(id)
                        )
                        await quiet.compact(id, document=kind)  # type: ignore[arg-type]
                    except StoreError as exc:
                        self.world.checker.fail(
                            "inv7-journal-compacts", f"{layout} {id} {kind}: {exc}"
                        )
                        continue
                    got = self.backend.get(BUCKET, quiet.layout.sidecar_key(Part(kind), id))
                    if loaded is not None and (got is None or got.body != codec.dumps(loaded)):
                        self.world.checker.fail(
                            "inv7-journal-compacts", f"{layout} {id} {kind}: folded array differs"
                        )

    def check_acked(self, key: str, etag: str) -> None:
        """Invariant 2a: an acknowledged write was applied (the ack is not a guess)."""
        if etag.startswith("j:"):
            # Journal mode: ``j:<incarnation>.<seq>``; seq 0 is the document's creation,
            # every later seq the create-only PUT of its delta.
            incarnation, _, seq = etag[2:].rpartition(".")
            base, _, name = key.rpartition("/")
            if base.endswith("/sessions"):
                base = base.removesuffix("/sessions")
            delta = (
                f"{base}/journal/{name.removesuffix('.json')}/{incarnation}.{int(seq):012d}.json"
            )
            applied = self.world.checker.applied
            if not (applied.get(delta) if int(seq) else applied.get(key)):
                self.world.checker.fail(
                    "inv2-acked-writes-applied", f"journal write {etag} to {key}, never applied"
                )
            return
        if etag not in self.world.checker.applied.get(key, []):
            self.world.checker.fail(
                "inv2-acked-writes-applied", f"write to {key} acknowledged as {etag}, never applied"
            )

    async def final_checks(self) -> None:
        checker = self.world.checker
        if self.profile.journal:
            await self.compact_all()
        # Invariants 2 and 3: every acknowledged change is in the final document exactly
        # once; an unknown one at most once; a failed one not at all.
        bodies: dict[str, bytes] = {}
        for m in self.markers:
            if m.key not in bodies:
                got = self.backend.get(BUCKET, m.key)
                bodies[m.key] = got.body if got is not None else b""
            count = bodies[m.key].count(f'"{m.marker}"'.encode())
            if m.outcome == "acked" and count == 0:
                checker.fail(
                    "inv2-no-lost-acknowledged-write", f"{m.marker} acked, gone from {m.key}"
                )
            elif (m.outcome == "acked" and count > 1) or (m.outcome == "unknown" and count > 1):
                checker.fail("inv3-applied-once", f"{m.marker} applied {count} times in {m.key}")
            elif m.outcome == "failed" and count:
                checker.fail(
                    "inv3-applied-once",
                    f"{m.marker} reported failed (not unknown) but applied {count}x in {m.key}",
                )
        self.check_fragments()
        self.check_appends()
        # Invariant 7: fsck from a fresh process, on a quiet network, finds nothing.
        for layout in self.profile.layouts:
            quiet = AsyncS3SessionStore(
                BUCKET,
                PREFIX,
                client=self.client_for(None),
                layout=layout,  # type: ignore[arg-type]
                inline_threshold=16,
                **_sim_settings(),
            )
            report = await quiet.fsck()
            for problem in report.problems:
                checker.fail("inv7-fsck-clean", f"{layout}: {problem}")


_TASKS: dict[str, set[asyncio.Task[Any]]] = {}


def _task_factory(loop: asyncio.AbstractEventLoop, coro: Any, context: Any = None) -> Any:
    task = asyncio.Task(coro, loop=loop, context=context)
    owner = (context.get(ACTOR) if context is not None else None) or ACTOR.get()
    _TASKS.setdefault(owner, set()).add(task)
    task.add_done_callback(lambda t: _TASKS.get(owner, set()).discard(t))
    return task


def _sim_settings() -> dict[str, Any]:
    """Store settings the simulation shrinks to its time scale (where the store has them)."""
    import s3store.config as config

    names = {f.name for f in dataclasses.fields(config.StoreSettings)}
    wanted = {"gc_grace_floor": GRACE, "blob_reuse_window": REUSE_WINDOW}
    return {k: v for k, v in wanted.items() if k in names}


def _quiet_client(backend: MemoryBackend) -> Any:
    from s3store.testing import AsyncMemoryObjectClient

    return AsyncMemoryObjectClient(BUCKET, backend=backend, create=False)


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """uuid4 and the global random from the seed, so the store's tokens replay too."""
    rng = random.Random(seed ^ 0x5EED)
    original = uuid.uuid4
    state = random.getstate()
    uuid.uuid4 = lambda: uuid.UUID(int=rng.getrandbits(128), version=4)
    random.seed(seed)
    store_module._CAPABILITIES.clear()
    try:
        yield
    finally:
        uuid.uuid4 = original
        random.setstate(state)
        store_module._CAPABILITIES.clear()
        _TASKS.clear()


@dataclass
class Result:
    """What one history found."""

    seed: int
    profile: str
    violations: list[str]
    steps: int
    virtual_seconds: float
    digest: str
    tail: str
    stats: dict[str, int] = field(default_factory=dict)
    transport: str = "boto"

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        head = f"seed {self.seed} profile {self.profile}: {len(self.violations)} violation(s)"
        lines = [head, *(f"  {v}" for v in self.violations[:10])]
        transport = "" if self.transport == "boto" else f" --transport {self.transport}"
        lines.append(
            f"  replay: python -m tests.sim --seed {self.seed} --profile {self.profile}"
            f"{transport} -v"
        )
        lines.append("  last steps:")
        lines.append(self.tail)
        return "\n".join(lines)


def run_seed(seed: int, profile: Profile | str = "default", transport: str = "boto") -> Result:
    """Play one history and check every invariant (``transport``: see TRANSPORTS)."""
    if isinstance(profile, str):
        profile = PROFILES[profile]
    with (
        _deterministic(seed),
        _transport_time(transport),
        asyncio.Runner(loop_factory=VirtualTimeLoop) as runner,
    ):
        runner.get_loop().set_task_factory(_task_factory)
        fleet = Fleet(seed, profile, transport)
        runner.run(_play(fleet))
        world = fleet.world
        return Result(
            seed=seed,
            profile=profile.name,
            violations=list(world.checker.violations),
            steps=len(world.steps),
            virtual_seconds=runner.get_loop().time(),
            digest=world.digest(),
            tail=world.tail(60),
            stats=_stats(world, fleet),
            transport=transport,
        )


def _transport_time(transport: str) -> contextlib.AbstractContextManager[None]:
    if transport != "obstore":
        return contextlib.nullcontext()
    from tests.sim import obstore_wire

    return obstore_wire.virtual_time()


def _stats(world: World, fleet: Fleet) -> dict[str, int]:
    """What a history exercised (so a green run can be told from an idle one)."""
    counts: dict[str, int] = {}

    def bump(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    for step in world.steps:
        blob = "/blobs/" in step.key
        if step.op == "DeleteObject" and blob:
            bump("gc deleted a blob" if step.outcome.startswith("ok") else "gc delete refused")
        elif step.op == "PutObject" and blob and step.outcome.startswith("ok"):
            bump("blob uploads" if step.detail else "blob re-uploads (freshen)")
        elif step.op in ("pause", "kill", "clock-step"):
            bump(f"nemesis {step.op}")
        if "answer lost" in step.outcome:
            bump("answers lost")
        if step.op == "HeadObject" and step.detail == "Date (presigned)":
            bump("server clock reads")
        if step.op == "PutObject" and step.outcome.startswith("ok") and "/journal/" in step.key:
            sidecar = step.key.rsplit("/", 2)[-2] in ARRAY_KINDS
            bump("sidecar deltas written" if sidecar else "session deltas written")
    for ops in fleet.appends.values():
        for op in ops:
            bump(f"sidecar appends {op.outcome}")
    for marker in fleet.markers:
        bump(f"changes {marker.outcome}")
    for event, count in fleet.lease_events.items():
        counts[event] = counts.get(event, 0) + count
    return counts


async def _play(fleet: Fleet) -> None:
    profile = fleet.profile
    if profile.snapshots:
        await fleet.create_snapshots()
    processes = [Process(f"w{n}") for n in range(profile.workers)]
    workers = []
    for n, process in enumerate(processes):
        layout = profile.layouts[n % len(profile.layouts)]
        workers.append(_spawn(process.name, fleet.worker(process, layout, profile.ops)))
    done = lambda: all(w.done() for w in workers)  # noqa: E731
    background = [_spawn("nemesis", fleet.nemesis(processes, done))]
    if profile.gc:
        gc_process = Process("gc")
        background.append(
            _spawn("gc", fleet.gc_actor(gc_process, fleet.rng.choice(profile.layouts), done))
        )
    ended = await asyncio.gather(*workers, return_exceptions=True)
    ended += await asyncio.gather(*background, return_exceptions=True)
    for outcome in ended:
        # An actor that died of anything but a cancellation stopped exercising the store
        # (a bad fixture once killed every worker that saved trace events, silently).
        if isinstance(outcome, Exception):
            fleet.world.checker.fail(
                "inv6-typed-errors", f"an actor died: {type(outcome).__name__}: {outcome!r:.300}"
            )
    # Let every request still on the wire land (or be refused as too old).
    await asyncio.sleep(profile.faults.max_request_age + 1)
    for process in processes:
        for task in list(_TASKS.get(process.name, ())):
            task.cancel()
    await asyncio.sleep(1)
    await fleet.final_checks()


def _spawn(name: str, coro: Any) -> asyncio.Task[Any]:
    ctx = asyncio.get_running_loop()
    token = ACTOR.set(name)
    try:
        return ctx.create_task(coro)
    finally:
        ACTOR.reset(token)


_FIXTURE = (
    __import__("pathlib").Path(__file__).parent.parent / "fixtures" / "session.json"
).read_bytes()
_TRACE: dict[str, Any] = {
    "schema": "a3s.trace_event.v1",
    "kind": "tool_execution",
    "name": "bash",
    "success": True,
    "exit_code": 0,
    "duration_ms": 3,
    "output_bytes": 10,
}
_RUN = json.loads(
    (
        __import__("pathlib").Path(__file__).parent.parent / "fixtures" / "run_records.json"
    ).read_bytes()
)[0]


def _marker_of(kind: str, item: Any) -> Any:
    """The marker of a stored trace event (its name) or run record (its snapshot id)."""
    return item.get("name") if kind == "traces" else item.get("snapshot", {}).get("id")


def _run_record(marker: str) -> RunRecord:
    """A run record told apart by its snapshot id."""
    return RunRecord.model_validate({**_RUN, "snapshot": {**_RUN["snapshot"], "id": marker}})


_ = EPOCH
