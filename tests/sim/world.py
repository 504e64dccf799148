"""The simulated world: one in-memory bucket, a faulty network, processes, and the checker.

Every request a store makes goes through a :class:`SimClient`: it waits out its process's
pause, travels for a seeded latency, is applied at the :class:`MemoryBackend` as one atomic
step (or fails before applying, or applies and loses its answer), and comes back. Above the
wire the client behaves like botocore (:class:`Botocore`): it retries 5xx, resets and
timeouts up to ``max_attempts`` with the *same* request (a lost answer followed by a retry is
how one write lands twice in real life) and reports ``retried`` on the error it finally
raises. ``tests/sim/obstore_wire.py`` puts the obstore transport on the same wire, with
object_store's retry rules instead (an :class:`Sdk` of its own).

The :class:`Checker` watches every applied step and checks the invariants that can be judged
at that instant (dangling blob references, stale lease holders, epochs, ignored conditions);
the rest are judged at the end of a history from what the actors recorded.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from s3store import cas
from s3store._async import journal
from s3store._memory import MemoryBackend
from s3store.errors import (
    AccessDeniedError,
    ConditionalRequestConflictError,
    DocumentTooLargeError,
    StoreError,
    TransientError,
)
from s3store.types import GetResult, ListPage, ObjectInfo, PutResult

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("sim_actor", default="main")
_LEASE_DIR = "/leases/"


@dataclass
class Faults:
    """Per-request fault probabilities and timing of one profile (all seeded)."""

    fail_before: float = 0.03
    conflict_409: float = 0.02
    lost_answer: float = 0.03
    slow: float = 0.04
    latency: tuple[float, float] = (0.001, 0.03)
    slow_latency: tuple[float, float] = (0.5, 8.0)
    read_timeout: float = 4.0
    max_attempts: int = 3
    # A signed request older than this is refused by the server (SigV4's 15 minutes,
    # scaled to the simulation's time), so no request lands arbitrarily late.
    max_request_age: float = 20.0


@dataclass(order=True)
class Step:
    """One applied (or refused) request, as the history recorder prints it."""

    seq: int
    time: float = field(compare=False)
    actor: str = field(compare=False)
    op: str = field(compare=False)
    key: str = field(compare=False)
    detail: str = field(compare=False)
    outcome: str = field(compare=False)

    def render(self) -> str:
        return (
            f"#{self.seq:<5} t={self.time:9.3f} {self.actor:<10} {self.op:<18} "
            f"{self.key:<60} {self.detail:<28} -> {self.outcome}"
        )


class Violation(AssertionError):
    """An invariant failed."""


@dataclass(frozen=True)
class Attempt:
    """How one attempt of a request ended, when it did not end with an answer to return.

    ``kind``: "error" (the server refused it: ``value`` is the StoreError the backend
    raised), "too-old" (refused as signed too long ago), "409" (refused as conflicting),
    "fail" (5xx or reset before it was applied) or "timeout" (no answer in time: it may
    have been applied).
    """

    op: str
    key: str
    kind: str
    value: Any
    attempts: int
    elapsed: float
    """Virtual seconds since the first attempt was sent."""


class Sdk(Protocol):
    """The client library around the wire: which failed attempts it re-sends, and what its
    caller sees when it gives up."""

    def again(self, attempt: Attempt) -> bool: ...

    def failure(self, attempt: Attempt) -> BaseException: ...


class Botocore:
    """botocore's standard retry mode as the store sees it: 5xx, resets and timeouts are
    re-sent (any request, conditional or not) up to ``max_attempts``; a 409 is not."""

    def __init__(self, world: World) -> None:
        self.world = world

    def again(self, attempt: Attempt) -> bool:
        return (
            attempt.kind in ("fail", "timeout")
            and attempt.attempts < self.world.faults.max_attempts
        )

    def failure(self, attempt: Attempt) -> BaseException:
        bucket, op, key = self.world.bucket, attempt.op, attempt.key
        retried = attempt.attempts > 1
        error: StoreError
        if attempt.kind == "error":
            error = attempt.value
        elif attempt.kind == "too-old":
            error = AccessDeniedError(f"{op} failed: RequestTimeTooSkewed", bucket=bucket, key=key)
        elif attempt.kind == "409":
            error = ConditionalRequestConflictError(
                f"{op} failed: conflicting concurrent request (409)", bucket=bucket, key=key
            )
        else:
            kind = attempt.kind
            error = TransientError(
                f"{op} failed: {kind} after {attempt.attempts} attempts",
                bucket=bucket,
                key=key,
                code="RequestTimeout" if kind == "timeout" else "InternalError",
            )
            retried = True
        error.retried = retried
        return error


class Process:
    """A simulated OS process: it can be paused (SIGSTOP) and killed (SIGKILL)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.paused_until = 0.0
        self.generation = 0
        self.paused_total = 0.0

    def kill(self) -> None:
        self.generation += 1


class World:
    """Shared state of one simulated history."""

    def __init__(self, seed: int, faults: Faults, backend: MemoryBackend, bucket: str) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults
        self.backend = backend
        self.bucket = bucket
        self.skew = 0.0
        self.steps: list[Step] = []
        self.checker = Checker(self)
        self.net_tasks: set[asyncio.Task[Any]] = set()
        backend.clock = self.server_now

    # -- time ----------------------------------------------------------------------------

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    def server_now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now() + self.skew)

    def step_clock(self, seconds: float) -> None:
        self.skew += seconds
        self.record("nemesis", "clock-step", "", f"{seconds:+.3f}s", "ok")

    # -- history ---------------------------------------------------------------------------

    def record(self, actor: str, op: str, key: str, detail: str, outcome: str) -> Step:
        step = Step(len(self.steps), self.now(), actor, op, key, detail, outcome)
        self.steps.append(step)
        return step

    def tail(self, n: int = 40) -> str:
        return "\n".join(step.render() for step in self.steps[-n:])

    def digest(self) -> str:
        """A fingerprint of the whole history (replays must reproduce it exactly)."""
        import hashlib

        text = "\n".join(step.render() for step in self.steps)
        return hashlib.sha256(text.encode()).hexdigest()

    # -- the wire --------------------------------------------------------------------------

    async def transmit(
        self,
        process: Process,
        op: str,
        key: str,
        detail: str,
        apply: Callable[[], Any],
        *,
        conditional: bool,
        mutating: bool,
        sdk: Sdk | None = None,
    ) -> Any:
        """One request from ``process``, re-sent as ``sdk`` (default botocore) decides."""
        f = self.faults
        client = sdk if sdk is not None else Botocore(self)
        attempts = 0
        started = self.now()
        while True:
            attempts += 1
            await self._gate(process)
            sent_at = self.now()
            roll = self.rng.random()
            if roll < f.fail_before:
                fault = "fail"
            elif conditional and roll < f.fail_before + f.conflict_409:
                fault = "409"
            elif mutating and roll < f.fail_before + f.conflict_409 + f.lost_answer:
                fault = "lost"
            else:
                fault = "none"
            slow = self.rng.random() < f.slow
            out = self.rng.uniform(*(f.slow_latency if slow else f.latency))
            back = self.rng.uniform(*f.latency)
            answer: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
            task = asyncio.get_running_loop().create_task(
                self._deliver(process, op, key, detail, apply, fault, out, back, sent_at, answer),
                context=_net_context(),
            )
            self.net_tasks.add(task)
            task.add_done_callback(self.net_tasks.discard)
            try:
                kind, value = await asyncio.wait_for(asyncio.shield(answer), f.read_timeout)
            except TimeoutError:
                kind, value = "timeout", None
            await self._gate(process)
            if kind == "ok":
                return value
            attempt = Attempt(op, key, kind, value, attempts, self.now() - started)
            if not client.again(attempt):
                raise client.failure(attempt)
            await asyncio.sleep(self.rng.uniform(0.0, 0.05 * 2**attempts))

    async def _deliver(
        self,
        process: Process,
        op: str,
        key: str,
        detail: str,
        apply: Callable[[], Any],
        fault: str,
        out: float,
        back: float,
        sent_at: float,
        answer: asyncio.Future[tuple[str, Any]],
    ) -> None:
        await asyncio.sleep(out)
        actor = f"{process.name}.{process.generation}"
        if fault in ("fail", "409"):
            self.record(actor, op, key, detail, f"refused ({fault})")
            result: tuple[str, Any] = (fault, None)
        elif self.now() - sent_at > self.faults.max_request_age:
            self.record(actor, op, key, detail, "refused (request too old)")
            result = ("too-old", None)
        else:
            try:
                value = apply()
            except StoreError as exc:
                # A transport's own error type may say better what the server answered.
                label = getattr(exc, "wire_label", None) or type(exc).__name__
                self.record(actor, op, key, detail, label)
                result = ("error", exc)
            else:
                self.record(actor, op, key, detail, _describe(value))
                result = ("ok", value)
            if fault == "lost":
                self.steps[-1].outcome += " (answer lost)"
                return
        await asyncio.sleep(back)
        if not answer.done():
            answer.set_result(result)

    # -- what a write does at the server (the checker watches both transports here) --------

    def apply_put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> PutResult:
        self.checker.before_put(key, body, if_none_match, if_match)
        result = self.backend.put(
            self.bucket,
            key,
            body,
            if_none_match=if_none_match,
            if_match=if_match,
            metadata=metadata,
        )
        self.checker.after_put(key, body, result)
        return result

    def apply_delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            existed = self.backend.head(self.bucket, key)
            self.backend.delete(self.bucket, key)
            if existed is not None:
                self.checker.after_delete(key)

    async def _gate(self, process: Process) -> None:
        generation = process.generation
        # The pause can be extended while we sleep (a second SIGSTOP): look again on waking.
        while self.now() < process.paused_until:  # noqa: ASYNC110
            await asyncio.sleep(process.paused_until - self.now())
        if process.generation != generation or getattr(process, "dead", False):
            raise asyncio.CancelledError


def _net_context() -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(ACTOR.set, "net")
    return ctx


def _describe(value: Any) -> str:
    if isinstance(value, PutResult):
        return f"ok {value.etag}"
    if isinstance(value, GetResult):
        return f"ok {value.info.etag} {len(value.body)}B"
    if isinstance(value, ObjectInfo):
        return f"ok {value.etag}"
    if isinstance(value, ListPage):
        return f"ok {len(value.objects)} objects"
    if value is None:
        return "ok (none)"
    return "ok"


class SimClient:
    """The object-client seam of one process's store, over the simulated wire."""

    def __init__(self, world: World, process: Process) -> None:
        self.world = world
        self.process = process
        self.backend = world.backend
        self.bucket = world.bucket

    def describe(self) -> dict[str, str]:
        return {"endpoint": f"sim-{self.world.seed}", "region": "sim", "bucket": self.bucket}

    async def _send(
        self,
        op: str,
        key: str,
        apply: Callable[[], Any],
        detail: str = "",
        *,
        conditional: bool = False,
        mutating: bool = False,
    ) -> Any:
        return await self.world.transmit(
            self.process, op, key, detail, apply, conditional=conditional, mutating=mutating
        )

    async def get(
        self,
        key: str,
        *,
        max_bytes: int | None = None,
        range_end: int | None = None,
        if_none_match: str | None = None,
    ) -> GetResult | None:
        result: GetResult | None = await self._send(
            "GetObject",
            key,
            lambda: self.backend.get(self.bucket, key, if_none_match=if_none_match),
        )
        if result is None or result.not_modified:
            return result
        if range_end is not None:
            return GetResult(body=result.body[:range_end], info=result.info)
        if max_bytes is not None and result.info.size > max_bytes:
            raise DocumentTooLargeError("object too large", bucket=self.bucket, key=key)
        return result

    async def head(self, key: str) -> ObjectInfo | None:
        info: ObjectInfo | None = await self._send(
            "HeadObject", key, lambda: self.backend.head(self.bucket, key)
        )
        return info

    async def put(
        self,
        key: str,
        body: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        metadata: Any = None,
    ) -> PutResult:
        detail = "If-None-Match" if if_none_match else f"If-Match {if_match}" if if_match else ""

        def apply() -> PutResult:
            return self.world.apply_put(
                key, body, if_none_match=if_none_match, if_match=if_match, metadata=metadata
            )

        result: PutResult = await self._send(
            "PutObject",
            key,
            apply,
            detail,
            conditional=if_none_match or if_match is not None,
            mutating=True,
        )
        return result

    async def create_multipart(self, key: str) -> str:
        upload: str = await self._send(
            "CreateMultipart", key, lambda: self.backend.create_multipart(self.bucket, key)
        )
        return upload

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        etag: str = await self._send(
            "UploadPart",
            key,
            lambda: self.backend.upload_part(self.bucket, key, upload_id, number, body),
            f"part {number}",
        )
        return etag

    async def complete_multipart(
        self, key: str, upload_id: str, etags: Any, *, if_none_match: bool = False
    ) -> PutResult:
        def apply() -> PutResult:
            result = self.backend.complete_multipart(
                self.bucket, key, upload_id, list(etags), if_none_match=if_none_match
            )
            got = self.backend.get(self.bucket, key)
            if got is not None:
                self.world.checker.after_put(key, got.body, result)
            return result

        result: PutResult = await self._send(
            "CompleteMultipart", key, apply, conditional=if_none_match, mutating=True
        )
        return result

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self._send(
            "AbortMultipart", key, lambda: self.backend.abort_multipart(self.bucket, key, upload_id)
        )

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        def apply() -> None:
            existed = self.backend.head(self.bucket, key)
            self.world.checker.before_delete(key, if_match)
            self.backend.delete(self.bucket, key, if_match=if_match)
            if existed is not None:
                self.world.checker.after_delete(key)

        await self._send(
            "DeleteObject",
            key,
            apply,
            f"If-Match {if_match}" if if_match else "",
            conditional=if_match is not None,
            mutating=True,
        )

    async def delete_many(self, keys: Any) -> None:
        keys = list(keys)

        await self._send(
            "DeleteObjects",
            keys[0] if keys else "",
            lambda: self.world.apply_delete_many(keys),
            f"{len(keys)} keys",
            mutating=True,
        )

    async def list_page(
        self,
        prefix: str,
        *,
        delimiter: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        page: ListPage = await self._send(
            "ListObjectsV2",
            prefix,
            lambda: self.backend.list_page(
                self.bucket, prefix, delimiter=delimiter, token=token, max_keys=max_keys
            ),
        )
        return page

    async def head_bucket(self) -> Any:
        def apply() -> datetime:
            self.backend.list_page(self.bucket, "", max_keys=1)
            return self.world.server_now()

        return await self._send("HeadBucket", "", apply)

    async def create_bucket(self) -> None:
        await self._send("CreateBucket", "", lambda: self.backend.create_bucket(self.bucket))

    async def close(self) -> None:
        return None


# -- invariants checked at every step ------------------------------------------------------


def blob_payload(body: bytes) -> bytes:
    """The content a stored blob carries (whatever framing the store adds)."""
    strip = getattr(cas, "blob_payload", None)
    return body if strip is None else bytes(strip(body))


class Checker:
    """Invariants judged at the instant a request applies."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.violations: list[str] = []
        self.refs: dict[str, set[str]] = {}  # manifest key -> digests
        self.applied: dict[str, list[str]] = {}  # key -> ETags of applied writes
        self.lease_epoch: dict[str, int] = {}  # lease key -> highest epoch ever written
        self.fenced: dict[str, int] = {}  # session key -> epoch of the newest completed acquire
        self.probe_keys: set[str] = set()
        self.injected: set[str] = set()

    def fail(self, invariant: str, message: str) -> None:
        step = self.world.steps[-1].seq + 1 if self.world.steps else 0
        self.violations.append(f"{invariant}: {message} (at step #{step})")

    # -- hooks ---------------------------------------------------------------------------

    def _is_probe(self, key: str) -> bool:
        return ".s3store-probe-" in key

    def before_put(self, key: str, body: bytes, if_none_match: bool, if_match: str | None) -> None:
        backend = self.world.backend
        # Blob uploads are idempotent by content: their If-None-Match only saves bandwidth and
        # promises nothing, so sending it to such a server breaks no promise.
        blob = "/blobs/" in key
        if (
            (if_none_match or if_match)
            and backend.ignore_conditions
            and not self._is_probe(key)
            and not blob
        ):
            self.fail(
                "inv5-condition-ignored",
                f"conditional PutObject sent to a server that ignores conditions: {key}",
            )

    def after_put(self, key: str, body: bytes, result: PutResult) -> None:
        self.applied.setdefault(key, []).append(result.etag)
        if key.endswith("/artifacts.json") and "/artifacts/" in key:
            self._manifest_written(key, body)
        elif _LEASE_DIR in key:
            self._lease_written(key, body)
        elif "/journal/" in key:
            self._delta_written(key)
        elif key.endswith(".json"):
            self._document_written(key, body)

    def before_delete(self, key: str, if_match: str | None) -> None:
        backend = self.world.backend
        ignores = backend.ignore_conditions or getattr(backend, "ignore_conditional_delete", False)
        if if_match and ignores and not self._is_probe(key):
            self.fail(
                "inv5-condition-ignored",
                f"conditional DeleteObject sent to a server that ignores it: {key}",
            )

    def after_delete(self, key: str) -> None:
        if key.endswith("/artifacts.json"):
            self.refs.pop(key, None)
            return
        if "/blobs/" not in key:
            return
        digest = key.rsplit("/", 1)[-1]
        holders = sorted(m for m, digests in self.refs.items() if digest in digests)
        if holders:
            self.fail(
                "inv1-no-dangling-reference",
                f"blob {digest[:16]}… deleted while {holders[0]} refers to it",
            )

    def _manifest_written(self, key: str, body: bytes) -> None:
        try:
            digests = cas.parse_manifest(body, source=key).digests
        except StoreError:
            return
        self.refs[key] = digests
        root = key[: key.index("artifacts/")].removesuffix("v1/")
        for digest in sorted(digests):
            blob_key = f"{root}{cas_blob_suffix(digest)}"
            got = self.world.backend.get(self.world.bucket, blob_key)
            if got is None:
                self.fail(
                    "inv1-no-dangling-reference",
                    f"manifest {key} written referring to missing blob {digest[:16]}…",
                )
            elif blob_key not in self.injected and cas.blake3_hex(blob_payload(got.body)) != digest:
                self.fail(
                    "inv1-no-dangling-reference",
                    f"manifest {key} written referring to corrupt blob {digest[:16]}…",
                )

    def _lease_written(self, key: str, body: bytes) -> None:
        try:
            epoch = int(json.loads(body).get("epoch", 0))
        except (ValueError, AttributeError):
            return
        last = self.lease_epoch.get(key, 0)
        if epoch < last:
            self.fail("inv4-epochs-increase", f"lease {key} went from epoch {last} to {epoch}")
        self.lease_epoch[key] = max(last, epoch)

    def _document_written(self, key: str, body: bytes) -> None:
        floor = self.fenced.get(key)
        if floor is None:
            return
        info = self.world.backend.head(self.world.bucket, key)
        if info is not None and journal.JOURNAL_META in info.metadata:
            _, folded = journal._incarnation_of(info)
            if folded:
                return  # a compaction: the same state, its deltas were judged as they landed
        try:
            document = json.loads(body)
            if isinstance(document, dict) and isinstance(document.get("session"), dict):
                document = document["session"]  # a snapshot: the fence is on its session
            fence = document.get("s3store_fence") or {}
        except (ValueError, AttributeError):
            return
        epoch = int(fence.get("epoch", 0)) if isinstance(fence, dict) else 0
        if epoch < floor:
            self.fail(
                "inv4-fenced-holder-refused",
                f"write of epoch {epoch} ({fence.get('holder')}) to {key} accepted after the "
                f"takeover at epoch {floor} completed",
            )

    def _delta_written(self, key: str) -> None:
        """Journal mode: the fence of the state a delta produces, if that delta is now part
        of the session (its incarnation's chain, contiguous after the folded document)."""
        directory, _, name = key.rpartition("/")
        base, _, safe_id = directory.rpartition("/journal/")
        if "/" in safe_id:
            return  # a sidecar's delta (journal/<id>/traces/…): sidecars carry no fence
        incarnation, _, rest = name.partition(".")
        seq_text = rest.removesuffix(".json")
        if not seq_text.isdigit():
            return
        seq = int(seq_text)
        where = f"{base}/sessions" if base.endswith("/v1") else base
        session_key = f"{where}/{safe_id}.json"
        floor = self.fenced.get(session_key)
        if floor is None:
            return
        backend, bucket = self.world.backend, self.world.bucket
        doc = backend.get(bucket, session_key)
        if doc is None:
            return  # void: the writer's confirming HEAD deletes it
        inc, folded = journal._incarnation_of(doc.info)
        if inc != incarnation or folded >= seq:
            return  # void as well (another incarnation, or a folded seq re-created)
        tree: Any = json.loads(doc.body)
        for n in range(folded + 1, seq + 1):
            got = backend.get(bucket, f"{directory}/{inc}.{n:012d}.json")
            if got is None:
                return  # a gap: not (yet) part of the session
            tree = journal._apply(tree, json.loads(got.body), key)
        fence = tree.get("s3store_fence") if isinstance(tree, dict) else None
        epoch = int(fence.get("epoch", 0)) if isinstance(fence, dict) else 0
        if epoch < floor:
            holder = fence.get("holder") if isinstance(fence, dict) else None
            self.fail(
                "inv4-fenced-holder-refused",
                f"journal delta {key} of epoch {epoch} ({holder}) appended after the takeover "
                f"at epoch {floor} completed",
            )

    def acquired(self, session_key: str, epoch: int) -> None:
        self.fenced[session_key] = max(self.fenced.get(session_key, 0), epoch)


def cas_blob_suffix(digest: str) -> str:
    from s3store.keys import blob_key_suffix

    return blob_key_suffix(digest)
