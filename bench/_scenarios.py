"""The six benchmark scenarios. Each takes a running server and returns a :class:`Section`."""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import _data
from _measure import Clock, Counter, Measure, Row, fmt, measured, table
from _servers import BUCKET, REGION, Server

from s3store.config import StoreSettings, client_kwargs
from s3store.keys import Part

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is (``--quick`` uses the small set)."""

    sessions: int = 32
    turns: int = 20
    concurrency: int = 16
    restore_messages: int = 200
    restores: int = 8
    artifact_sessions: int = 100
    sweep_levels: tuple[int, ...] = (1, 4, 16, 64)
    sweep_ops: int = 256
    sweep_messages: int = 20
    cold_runs: int = 5
    blake3_sizes: tuple[int, ...] = (1 * _data.MIB, 64 * _data.MIB)
    blake3_hash_runs: int = 5
    # (label, messages, concurrency levels, ops per level): about 220 KiB and 5 MB
    large_sessions: tuple[tuple[str, int, tuple[int, ...], int], ...] = (
        ("220 KiB", 90, (1, 4, 16, 64), 64),
        ("5 MB", 2000, (1, 4, 16), 16),
    )


FULL = Sizes()
QUICK = Sizes(
    sessions=8,
    turns=4,
    restores=2,
    artifact_sessions=12,
    sweep_ops=32,
    cold_runs=1,
    blake3_sizes=(1 * _data.MIB, 16 * _data.MIB),
    blake3_hash_runs=2,
    large_sessions=(("220 KiB", 90, (1, 4), 8), ("5 MB", 2000, (1,), 2)),
)


@dataclass
class Section:
    """One scenario's results on one server."""

    key: str
    title: str
    server: str
    rows: list[Row] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def row(self, variant: str, **kwargs: Any) -> Row:
        for r in self.rows:
            if r.variant == variant and r.concurrency == kwargs.get("concurrency"):
                return r
        made = Row(scenario=self.key, server=self.server, variant=variant, **kwargs)
        self.rows.append(made)
        return made


def settings(server: Server, prefix: str, **extra: Any) -> StoreSettings:
    return StoreSettings(
        bucket=BUCKET, prefix=prefix, endpoint_url=server.endpoint, region_name=REGION, **extra
    )


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


async def bounded(tasks: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    semaphore = asyncio.Semaphore(limit)

    async def run(task: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await task()

    return list(await asyncio.gather(*(run(t) for t in tasks)))


def threaded(tasks: Sequence[Callable[[], T]], limit: int) -> list[T]:
    with ThreadPoolExecutor(max_workers=limit) as pool:
        return list(pool.map(lambda task: task(), tasks))


# -- raw clients (the floor) ------------------------------------------------------------


class RawAsync:
    """The raw floor: one aioboto3 client with the store's botocore config; counts its calls."""

    def __init__(self, server: Server) -> None:
        self.settings = settings(server, "")
        self.counter = Counter()
        self._cm: Any = None
        self.client: Any = None

    async def __aenter__(self) -> RawAsync:
        import aioboto3

        self._cm = aioboto3.Session().client("s3", **client_kwargs(self.settings))
        self.client = await self._cm.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._cm.__aexit__(None, None, None)

    async def put(self, key: str, body: bytes) -> None:
        await self.client.put_object(Bucket=BUCKET, Key=key, Body=body)
        self.counter.add("PUT", up=len(body))

    async def get(self, key: str) -> bytes:
        response = await self.client.get_object(Bucket=BUCKET, Key=key)
        # Body.read() as the store reads it: botocore then checks the CRC32 and the length.
        # (`async with response["Body"]` hands back aiohttp's response, which skips both.)
        stream = response["Body"]
        try:
            body: bytes = await stream.read()
        finally:
            stream.close()
        self.counter.add("GET", down=len(body))
        return body


class RawSync:
    """The raw floor with boto3 (threads share one client)."""

    def __init__(self, server: Server) -> None:
        import boto3

        self.counter = Counter()
        self.client = boto3.Session().client("s3", **client_kwargs(settings(server, "")))

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=body)
        self.counter.add("PUT", up=len(body))

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        self.counter.add("GET", down=len(body))
        return body


# -- strands ------------------------------------------------------------------------------


def strands_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("strands-agents")
    except PackageNotFoundError:
        return "not installed"


def strands_unavailable() -> str | None:
    """Why strands cannot be driven here, or None."""
    try:
        from strands.session.s3_session_manager import S3SessionManager
    except Exception as exc:  # pragma: no cover - depends on the venv
        return f"strands-agents not importable: {exc!r}"
    import inspect

    if "endpoint_url" not in inspect.signature(S3SessionManager.__init__).parameters:
        return "this strands-agents has no endpoint_url; set AWS_ENDPOINT_URL_S3 instead"
    return None


def strands_agent(server: Server, prefix: str, sid: str, counter: Counter) -> tuple[Any, Any]:
    """An S3SessionManager as strands builds it (its own boto3 session and client) + an Agent.

    The counter is attached to the boto3 session before the manager builds its client, so
    every request of the manager is counted (the client copies the session's event hooks).
    """
    import boto3
    from strands import Agent
    from strands.session.s3_session_manager import S3SessionManager

    session = boto3.Session(region_name=REGION)
    counter.attach(session.events)
    manager = S3SessionManager(
        session_id=sid,
        bucket=BUCKET,
        prefix=prefix,
        boto_session=session,
        endpoint_url=server.endpoint,
    )
    agent = Agent(
        model=_stub_model(), session_manager=manager, agent_id="default", callback_handler=None
    )
    return manager, agent


def _stub_model() -> Any:
    """A strands Model that is never called (no LLM: only the session layer is measured)."""
    from strands.models.model import Model

    class StubModel(Model):
        def update_config(self, **model_config: Any) -> None:
            return None

        def get_config(self) -> Any:
            return {}

        def structured_output(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        def stream(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    return StubModel()


def strands_add_message(agent: Any, message: dict[str, Any], turn: int) -> None:
    """One agent turn as strands' Agent persists it: the loop state changes, the message is
    appended, and MessageAddedEvent fires (its hooks call append_message then sync_agent)."""
    from strands.hooks import MessageAddedEvent

    agent.state.set("loop", {"turn": turn, "tool_calls": turn, "traces": turn + 1})
    agent.messages.append(message)
    agent.hooks.invoke_callbacks(MessageAddedEvent(agent=agent, message=message))  # type: ignore[arg-type]


# == 1. agent turns =========================================================================


def scenario_turns(server: Server, sizes: Sizes, repeat: int, tag: str) -> Section:
    from s3store import AsyncS3SessionStore, S3SessionStore, codec
    from s3store.keys import Layout

    section = Section("turns", "1. Agent turns", server.name)
    ids = [f"s{i:04d}" for i in range(sizes.sessions)]
    work = _data.agent_turns(ids, sizes.turns)
    ops = sizes.sessions * sizes.turns
    conc = sizes.concurrency
    # The raw floor writes exactly the bytes s3store writes, encoded up front.
    bodies = {
        sid: [
            (codec.dumps(t.session), codec.dumps(t.checkpoint), codec.dumps(t.traces))
            for t in turns
        ]
        for sid, turns in work.items()
    }
    rng_msgs = random.Random(1)
    strands_msgs = [_data.strands_message(rng_msgs, t) for t in range(sizes.turns)]
    why_not = strands_unavailable()
    section.data["workload"] = (
        f"{sizes.sessions} sessions x {sizes.turns} turns; per turn: save session (+1 message "
        f"of ~1 KiB), save loop checkpoint, save trace events (one more event)"
    )
    section.data["strands_version"] = strands_version()

    async def s3_async(prefix: str) -> Measure:
        async with AsyncS3SessionStore(
            bucket=BUCKET, prefix=prefix, endpoint_url=server.endpoint, region_name=REGION
        ) as store:

            async def one(sid: str) -> None:
                for t in work[sid]:
                    await store.save(t.session)
                    await store.save_loop_checkpoint(t.run_id, t.checkpoint)
                    await store.save_trace_events(sid, t.traces)

            await store.save_trace_events("warmup", [])  # connection + first-call costs
            store.stats.reset()
            with measured(ops, store.stats) as out:
                await bounded([partial(one, sid) for sid in ids], conc)
            return out[0]

    def s3_sync(prefix: str) -> Measure:
        with S3SessionStore(
            bucket=BUCKET, prefix=prefix, endpoint_url=server.endpoint, region_name=REGION
        ) as store:

            def one(sid: str) -> None:
                for t in work[sid]:
                    store.save(t.session)
                    store.save_loop_checkpoint(t.run_id, t.checkpoint)
                    store.save_trace_events(sid, t.traces)

            threaded([lambda: store.save_trace_events("warmup", [])] * conc, conc)
            store.stats.reset()
            with measured(ops, store.stats) as out:
                threaded([partial(one, sid) for sid in ids], conc)
            return out[0]

    def keys(prefix: str, sid: str) -> tuple[str, str, str]:
        layout = Layout(prefix, "legacy")
        return (
            layout.session_key(sid),
            layout.loop_checkpoint_key(f"run-{sid}"),
            layout.sidecar_key(Part.TRACES, sid),
        )

    async def raw_async(prefix: str) -> Measure:
        async with RawAsync(server) as raw:

            async def one(sid: str) -> None:
                k = keys(prefix, sid)
                for triple in bodies[sid]:
                    for key, body in zip(k, triple, strict=True):
                        await raw.put(key, body)

            await raw.put(f"{prefix}/warmup", b"[]")
            raw.counter.reset()
            with measured(ops, raw.counter) as out:
                await bounded([partial(one, sid) for sid in ids], conc)
            return out[0]

    def raw_sync(prefix: str) -> Measure:
        raw = RawSync(server)

        def one(sid: str) -> None:
            k = keys(prefix, sid)
            for triple in bodies[sid]:
                for key, body in zip(k, triple, strict=True):
                    raw.put(key, body)

        threaded([lambda: raw.put(f"{prefix}/warmup", b"[]")] * conc, conc)
        raw.counter.reset()
        with measured(ops, raw.counter) as out:
            threaded([partial(one, sid) for sid in ids], conc)
        return out[0]

    def strands(prefix: str) -> Measure:
        counter = Counter()
        msgs = {sid: copy.deepcopy(strands_msgs) for sid in ids}

        def one(sid: str) -> None:
            _, agent = strands_agent(server, prefix, sid, counter)
            for turn, msg in enumerate(msgs[sid]):
                strands_add_message(agent, msg, turn)

        with measured(ops, counter) as out:
            threaded([partial(one, sid) for sid in ids], conc)
        section.data.setdefault("strands_requests_by_method", []).append(counter.by_method)
        return out[0]

    floor = "raw floor: aioboto3 put_object"
    variants: list[tuple[str, Callable[[str], Measure], str | None, str]] = [
        (floor, lambda p: asyncio.run(raw_async(p)), None, ""),
        ("s3store async", lambda p: asyncio.run(s3_async(p)), floor, ""),
        ("s3store sync", s3_sync, floor, "threads"),
        ("raw floor: boto3 put_object", raw_sync, None, "threads"),
        (
            "strands S3SessionManager",
            strands,
            floor,
            f"strands-agents {strands_version()}, threads",
        ),
    ]
    for r in range(repeat):
        for name, fn, fl, note in variants:
            row = section.row(name, concurrency=conc)
            row.floor, row.note = fl, note
            if name.startswith("strands") and why_not:
                row.error = why_not
                continue
            log(f"turns r{r} {name}")
            row.runs.append(fn(f"{tag}/turns/{_slug(name)}/r{r}"))
    return section


# == 2. restore =============================================================================


def scenario_restore(server: Server, sizes: Sizes, repeat: int, tag: str) -> Section:
    from s3store import AsyncS3SessionStore, S3SessionStore
    from s3store.keys import Layout

    section = Section("restore", "2. Restore", server.name)
    n = sizes.restore_messages
    rng = random.Random(2)
    msgs = [_data.message(rng, t) for t in range(n)]
    rng = random.Random(2)
    smsgs = [_data.strands_message(rng, t) for t in range(n)]
    prefix = f"{tag}/restore"
    ids = [f"r{i:03d}" for i in range(sizes.restores)]
    section.data["workload"] = (
        f"{sizes.restores} restores in sequence, each of a {n}-message session (~1 KiB "
        "messages) with its sidecars (traces, runs, verification, subagent tasks) and its "
        "loop checkpoint"
    )

    async def setup() -> None:
        async with AsyncS3SessionStore(
            bucket=BUCKET, prefix=prefix, endpoint_url=server.endpoint, region_name=REGION
        ) as store:
            for sid in ids:
                await store.save(_data.session(sid, msgs))
                await store.save_trace_events(sid, [_data.trace_event(t) for t in range(n // 2)])
                await store.save_run_records(sid, _data.run_records(sid))
                await store.save_verification_reports(sid, _data.verification_reports())
                await store.save_subagent_tasks(sid, _data.subagent_tasks(sid))
                await store.save_loop_checkpoint(
                    f"run-{sid}", _data.checkpoint(f"run-{sid}", sid, n, msgs[-2:])
                )

    log("restore setup (s3store)")
    asyncio.run(setup())
    why_not = strands_unavailable()
    if why_not is None:
        log("restore setup (strands)")

        def strands_setup(sid: str) -> None:
            _, agent = strands_agent(server, prefix, sid, Counter())
            for turn, msg in enumerate(copy.deepcopy(smsgs)):
                strands_add_message(agent, msg, turn)

        threaded([partial(strands_setup, sid) for sid in ids], 4)

    async def s3_async() -> Measure:
        async with AsyncS3SessionStore(
            bucket=BUCKET, prefix=prefix, endpoint_url=server.endpoint, region_name=REGION
        ) as store:
            await store.load_run_records(ids[0])
            store.stats.reset()
            with measured(len(ids), store.stats) as out:
                for sid in ids:
                    got = await asyncio.gather(
                        store.load(sid),
                        store.load_trace_events(sid),
                        store.load_run_records(sid),
                        store.load_verification_reports(sid),
                        store.load_subagent_tasks(sid),
                        store.load_loop_checkpoint(f"run-{sid}"),
                    )
                    assert got[0] is not None
                    assert len(got[0].messages) == n
            return out[0]

    def s3_sync() -> Measure:
        with S3SessionStore(
            bucket=BUCKET, prefix=prefix, endpoint_url=server.endpoint, region_name=REGION
        ) as store:
            store.load_run_records(ids[0])
            store.stats.reset()
            with measured(len(ids), store.stats) as out:
                for sid in ids:
                    session = store.load(sid)
                    store.load_trace_events(sid)
                    store.load_run_records(sid)
                    store.load_verification_reports(sid)
                    store.load_subagent_tasks(sid)
                    store.load_loop_checkpoint(f"run-{sid}")
                    assert session is not None
                    assert len(session.messages) == n
            return out[0]

    layout = Layout(prefix, "legacy")

    def object_keys(sid: str) -> list[str]:
        return [
            layout.session_key(sid),
            *(layout.sidecar_key(p, sid) for p in (Part.TRACES, Part.RUNS)),
            *(layout.sidecar_key(p, sid) for p in (Part.VERIFICATION, Part.SUBAGENT_TASKS)),
            layout.loop_checkpoint_key(f"run-{sid}"),
        ]

    async def raw_async() -> Measure:
        async with RawAsync(server) as raw:
            await raw.get(object_keys(ids[0])[2])
            raw.counter.reset()
            with measured(len(ids), raw.counter) as out:
                for sid in ids:
                    await asyncio.gather(*(raw.get(k) for k in object_keys(sid)))
            return out[0]

    def strands() -> tuple[Measure, Measure]:
        counter = Counter()
        build = 0.0
        with measured(len(ids), counter) as out:
            for sid in ids:
                t0 = time.perf_counter()
                import boto3
                from strands import Agent
                from strands.session.s3_session_manager import S3SessionManager

                session = boto3.Session(region_name=REGION)
                counter.attach(session.events)
                manager = S3SessionManager(
                    session_id=sid,
                    bucket=BUCKET,
                    prefix=prefix,
                    boto_session=session,
                    endpoint_url=server.endpoint,
                )
                build += time.perf_counter() - t0
                agent = Agent(
                    model=_stub_model(),
                    session_manager=manager,
                    agent_id="default",
                    callback_handler=None,
                )
                assert len(agent.messages) == n, len(agent.messages)
        total = out[0]
        only = Measure(
            wall=total.wall - build,
            cpu=float("nan"),
            ops=total.ops,
            requests=total.requests - len(ids),  # minus the manager's GET of session.json
            bytes_up=total.bytes_up,
            bytes_down=total.bytes_down,
        )
        total.extra["manager_build_s"] = build
        return total, only

    floor = "raw floor: aioboto3 get_object"
    strands_note = f"strands-agents {strands_version()}"
    for r in range(repeat):
        log(f"restore r{r}")
        section.row(floor).runs.append(asyncio.run(raw_async()))
        row = section.row("s3store async")
        row.floor, row.note = floor, "6 GETs concurrently"
        row.runs.append(asyncio.run(s3_async()))
        row = section.row("s3store sync")
        row.floor, row.note = floor, "6 GETs in sequence"
        row.runs.append(s3_sync())
        row = section.row("strands S3SessionManager + Agent")
        row.floor, row.note = floor, f"{strands_note}; incl. its boto3 client build"
        only_row = section.row("strands Agent restore only")
        only_row.floor, only_row.note = floor, "excl. manager/client build"
        if why_not:
            row.error = only_row.error = why_not
            continue
        total, only = strands()
        row.runs.append(total)
        only_row.runs.append(only)
    return section


# == 3. artifacts ===========================================================================


def scenario_artifacts(server: Server, sizes: Sizes, repeat: int, tag: str) -> Section:
    from s3store import AsyncS3SessionStore, codec
    from s3store.keys import Layout

    section = Section(
        "artifacts", "3. Artifacts: content addressing vs inline manifests", server.name
    )
    mix = _data.ArtifactMix(sessions=sizes.artifact_sessions)
    sessions = _data.artifact_sessions(mix)
    ids = list(sessions)
    conc = sizes.concurrency
    inline = {sid: codec.dumps(a) for sid, a in sessions.items()}
    logical = sum(len(c.content.encode()) for a in sessions.values() for c in a.artifacts)
    distinct = len({c.content for a in sessions.values() for c in a.artifacts})
    section.data["workload"] = mix.describe()
    section.data["logical_content_bytes"] = logical
    section.data["distinct_contents"] = distinct
    section.data["inline_manifest_bytes"] = sum(len(b) for b in inline.values())

    def stored_bytes(prefix: str) -> tuple[int, int]:
        raw = RawSync(server)
        total = count = 0
        for page in raw.client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=prefix + "/"
        ):
            for obj in page.get("Contents", []):
                total += obj["Size"]
                count += 1
        return total, count

    async def s3_save(prefix: str, threshold: int, fresh_per_session: bool) -> Measure:
        opts: dict[str, Any] = {"inline_threshold": threshold}
        if not fresh_per_session:
            async with AsyncS3SessionStore(
                bucket=BUCKET,
                prefix=prefix,
                endpoint_url=server.endpoint,
                region_name=REGION,
                **opts,
            ) as store:
                store.stats.reset()
                with measured(len(ids), store.stats) as out:
                    await bounded(
                        [partial(store.save_artifacts, sid, sessions[sid]) for sid in ids],
                        conc,
                    )
                return out[0]
        # A fresh store per session (as separate processes would have): nothing is known,
        # so every blob is sent create-only and a 412 says it is there. One shared client.
        async with RawAsync(server) as raw:
            counter = Counter()

            async def one(sid: str) -> None:
                async with AsyncS3SessionStore(
                    bucket=BUCKET, prefix=prefix, client=raw.client, **opts
                ) as store:
                    await store.save_artifacts(sid, sessions[sid])
                    stats = store.stats
                    counter.add_many(stats.total_requests, stats.bytes_up, stats.bytes_down)

            with measured(len(ids), counter) as out:
                await bounded([partial(one, sid) for sid in ids], conc)
            return out[0]

    async def inline_save(prefix: str) -> Measure:
        layout = Layout(prefix, "legacy")
        async with RawAsync(server) as raw:
            with measured(len(ids), raw.counter) as out:
                await bounded(
                    [
                        partial(raw.put, layout.artifact_manifest_key(sid), inline[sid])
                        for sid in ids
                    ],
                    conc,
                )
            return out[0]

    async def s3_load(prefix: str, threshold: int) -> Measure:
        async with AsyncS3SessionStore(
            bucket=BUCKET,
            prefix=prefix,
            endpoint_url=server.endpoint,
            region_name=REGION,
            inline_threshold=threshold,
        ) as store:
            store.stats.reset()
            with measured(len(ids), store.stats) as out:
                await bounded(
                    [partial(store.load_artifacts, sid) for sid in ids],
                    conc,
                )
            return out[0]

    async def inline_load(prefix: str) -> Measure:
        layout = Layout(prefix, "legacy")
        async with RawAsync(server) as raw:
            with measured(len(ids), raw.counter) as out:
                await bounded(
                    [partial(raw.get, layout.artifact_manifest_key(sid)) for sid in ids],
                    conc,
                )
            return out[0]

    floor = "inline manifests (Rust format): raw put_object"
    for r in range(repeat):
        log(f"artifacts r{r}")
        p = f"{tag}/art/inline/r{r}"
        m = asyncio.run(inline_save(p))
        m.extra["stored_bytes"], m.extra["stored_objects"] = stored_bytes(p)
        section.row(floor, concurrency=conc).runs.append(m)
        p = f"{tag}/art/cas-shared/r{r}"
        m = asyncio.run(s3_save(p, 4096, False))
        m.extra["stored_bytes"], m.extra["stored_objects"] = stored_bytes(p)
        row = section.row("s3store save_artifacts, one store", concurrency=conc)
        row.floor, row.note = floor, "threshold 4096"
        row.runs.append(m)
        p = f"{tag}/art/cas-fresh/r{r}"
        m = asyncio.run(s3_save(p, 4096, True))
        m.extra["stored_bytes"], m.extra["stored_objects"] = stored_bytes(p)
        row = section.row("s3store save_artifacts, fresh store per session", concurrency=conc)
        row.floor, row.note = floor, "threshold 4096; dedup by 412"
        row.runs.append(m)

    # The inline_threshold sweep: deterministic counts, so one pass.
    log("artifacts threshold sweep")
    sweep: list[dict[str, Any]] = []
    p = f"{tag}/art/sweep-inline"
    saved = asyncio.run(inline_save(p))
    loaded = asyncio.run(inline_load(p))
    stored, objects = stored_bytes(p)
    sweep.append(_sweep_entry("inline (Rust)", saved, loaded, stored, objects))
    for threshold in (0, 1024, 4096, 16384):
        p = f"{tag}/art/sweep-{threshold}"
        saved = asyncio.run(s3_save(p, threshold, False))
        loaded = asyncio.run(s3_load(p, threshold))
        stored, objects = stored_bytes(p)
        sweep.append(_sweep_entry(str(threshold), saved, loaded, stored, objects))
    section.data["threshold_sweep"] = sweep
    headers = [
        "server",
        "inline_threshold",
        "save req",
        "save MiB up",
        "save s",
        "load req",
        "load MiB down",
        "load s",
        "stored objects",
        "stored MiB",
    ]
    section.tables.append(
        table(
            headers,
            [
                [
                    server.name,
                    e["threshold"],
                    str(e["save_requests"]),
                    fmt(e["save_bytes_up"] / _data.MIB),
                    fmt(e["save_wall"]),
                    str(e["load_requests"]),
                    fmt(e["load_bytes_down"] / _data.MIB),
                    fmt(e["load_wall"]),
                    str(e["stored_objects"]),
                    fmt(e["stored_bytes"] / _data.MIB),
                ]
                for e in sweep
            ],
        )
    )
    return section


def _sweep_entry(
    threshold: str, saved: Measure, loaded: Measure, stored: int, objects: int
) -> dict[str, Any]:
    return {
        "threshold": threshold,
        "sessions": saved.ops,
        "save_requests": saved.requests,
        "save_bytes_up": saved.bytes_up,
        "save_wall": saved.wall,
        "load_requests": loaded.requests,
        "load_bytes_down": loaded.bytes_down,
        "load_wall": loaded.wall,
        "stored_bytes": stored,
        "stored_objects": objects,
    }


# == 4. concurrency sweep ===================================================================


def scenario_sweep(server: Server, sizes: Sizes, repeat: int, tag: str) -> Section:
    from s3store import AsyncS3SessionStore, codec
    from s3store.keys import Layout

    section = Section("sweep", "4. Concurrency sweep", server.name)
    rng = random.Random(4)
    msgs = [_data.message(rng, t) for t in range(sizes.sweep_messages)]
    n_ids = 64
    sessions = [_data.session(f"c{i:03d}", msgs) for i in range(n_ids)]
    bodies = [codec.dumps(s) for s in sessions]
    ops = sizes.sweep_ops
    section.data["workload"] = (
        f"{ops} saves then {ops} loads per level of a {len(bodies[0]) // 1024} KiB session "
        f"({sizes.sweep_messages} messages), over {n_ids} session ids"
    )

    async def s3(prefix: str, conc: int) -> tuple[Measure, Measure]:
        async with AsyncS3SessionStore(
            bucket=BUCKET, prefix=prefix, endpoint_url=server.endpoint, region_name=REGION
        ) as store:
            await store.save(sessions[0])
            await store.load(sessions[0].id)
            store.stats.reset()
            with measured(ops, store.stats) as saved:
                await bounded(
                    [partial(store.save, sessions[i % n_ids]) for i in range(ops)],
                    conc,
                )
            store.stats.reset()
            with measured(ops, store.stats) as loaded:
                await bounded(
                    [partial(store.load, f"c{i % n_ids:03d}") for i in range(ops)],
                    conc,
                )
            return saved[0], loaded[0]

    async def raw(prefix: str, conc: int) -> tuple[Measure, Measure]:
        layout = Layout(prefix, "legacy")
        keys = [layout.session_key(f"c{i:03d}") for i in range(n_ids)]
        async with RawAsync(server) as client:
            await client.put(keys[0], bodies[0])
            await client.get(keys[0])
            client.counter.reset()
            with measured(ops, client.counter) as saved:
                await bounded(
                    [partial(client.put, keys[i % n_ids], bodies[i % n_ids]) for i in range(ops)],
                    conc,
                )
            client.counter = Counter()
            with measured(ops, client.counter) as loaded:
                await bounded(
                    [partial(client.get, keys[i % n_ids]) for i in range(ops)],
                    conc,
                )
            return saved[0], loaded[0]

    for r in range(repeat):
        for conc in sizes.sweep_levels:
            log(f"sweep r{r} concurrency {conc}")
            put, get = asyncio.run(raw(f"{tag}/sweep/raw/r{r}/c{conc}", conc))
            section.row("raw floor: put_object", concurrency=conc).runs.append(put)
            section.row("raw floor: get_object", concurrency=conc).runs.append(get)
            save, load = asyncio.run(s3(f"{tag}/sweep/s3/r{r}/c{conc}", conc))
            row = section.row("s3store save", concurrency=conc)
            row.floor = "raw floor: put_object"
            row.runs.append(save)
            row = section.row("s3store load", concurrency=conc)
            row.floor = "raw floor: get_object"
            row.runs.append(load)
    section.rows.sort(key=lambda r: (r.concurrency or 0, r.variant))
    return section


# == 4b. large sessions ===================================================================


def scenario_large(server: Server, sizes: Sizes, repeat: int, tag: str) -> Section:
    """Save and load of 220 KiB and 5 MB sessions (varied messages) against the raw floor."""
    from bench_codec import build_session

    from s3store import AsyncS3SessionStore, codec
    from s3store.keys import Layout
    from s3store.models import SessionData

    section = Section("large", "4b. Large sessions", server.name)
    cases = [(label, msgs, levels, ops) for label, msgs, levels, ops in sizes.large_sessions]
    section.data["workload"] = "; ".join(
        f"{label}: {ops} saves then {ops} loads per level, concurrency {'/'.join(map(str, lv))}"
        for label, _, lv, ops in cases
    )

    def run_case(label: str, messages: int, levels: tuple[int, ...], ops: int) -> None:
        session = SessionData.model_validate(build_session(messages))
        body = codec.dumps(session)
        n_ids = max(levels)
        sessions = [session.model_copy(update={"id": f"L{i:03d}"}) for i in range(n_ids)]
        bodies = [codec.dumps(s) for s in sessions]
        size = f"{label} ({len(body) / 1024:.0f} KiB)"

        async def s3(prefix: str, conc: int) -> tuple[Measure, Measure]:
            async with AsyncS3SessionStore(
                bucket=BUCKET, prefix=prefix, endpoint_url=server.endpoint, region_name=REGION
            ) as store:
                await store.save(sessions[0])
                await store.load(sessions[0].id)
                store.stats.reset()
                with measured(ops, store.stats) as saved:
                    await bounded(
                        [partial(store.save, sessions[i % n_ids]) for i in range(ops)], conc
                    )
                store.stats.reset()
                with measured(ops, store.stats) as loaded:
                    await bounded(
                        [partial(store.load, f"L{i % n_ids:03d}") for i in range(ops)], conc
                    )
                return saved[0], loaded[0]

        async def raw(prefix: str, conc: int) -> tuple[Measure, Measure]:
            layout = Layout(prefix, "legacy")
            keys = [layout.session_key(f"L{i:03d}") for i in range(n_ids)]
            async with RawAsync(server) as client:
                await client.put(keys[0], bodies[0])
                await client.get(keys[0])
                client.counter.reset()
                with measured(ops, client.counter) as saved:
                    await bounded(
                        [
                            partial(client.put, keys[i % n_ids], bodies[i % n_ids])
                            for i in range(ops)
                        ],
                        conc,
                    )
                client.counter = Counter()
                with measured(ops, client.counter) as loaded:
                    await bounded([partial(client.get, keys[i % n_ids]) for i in range(ops)], conc)
                return saved[0], loaded[0]

        for r in range(repeat):
            for conc in levels:
                log(f"large {label} r{r} concurrency {conc}")
                put, get = asyncio.run(raw(f"{tag}/large/raw/{messages}/r{r}/c{conc}", conc))
                section.row(f"raw floor: put_object {size}", concurrency=conc).runs.append(put)
                section.row(f"raw floor: get_object {size}", concurrency=conc).runs.append(get)
                save, load = asyncio.run(s3(f"{tag}/large/s3/{messages}/r{r}/c{conc}", conc))
                row = section.row(f"s3store save {size}", concurrency=conc)
                row.floor = f"raw floor: put_object {size}"
                row.runs.append(save)
                row = section.row(f"s3store load {size}", concurrency=conc)
                row.floor = f"raw floor: get_object {size}"
                row.runs.append(load)

    for label, messages, levels, ops in cases:
        run_case(label, messages, levels, ops)
    return section


def plot_sweep(sections: list[Section], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sections), figsize=(6 * len(sections), 4.5), squeeze=False)
    for ax, section in zip(axes[0], sections, strict=True):
        variants = sorted({r.variant for r in section.rows})
        for variant in variants:
            rows = sorted(
                (r for r in section.rows if r.variant == variant and r.runs),
                key=lambda r: r.concurrency or 0,
            )
            xs = [r.concurrency or 0 for r in rows]
            ys = [r.median("ops_per_s") for r in rows]
            lo = [r.median("ops_per_s") - r.spread("ops_per_s")[0] for r in rows]
            hi = [r.spread("ops_per_s")[1] - r.median("ops_per_s") for r in rows]
            style = "--" if "raw" in variant else "-"
            ax.errorbar(xs, ys, yerr=[lo, hi], label=variant, linestyle=style, marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(section.data.get("levels", [1, 4, 16, 64])))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrency (in-flight operations)")
        ax.set_ylabel("ops/s (median, bars: min–max)")
        ax.set_title(f"{section.server}: session save/load")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# == 5. cold start ==========================================================================


def scenario_cold(server: Server, sizes: Sizes, repeat: int, tag: str) -> Section:
    section = Section("cold", "5. Cold start (fresh process)", server.name)
    runs = max(sizes.cold_runs, repeat)
    script = HERE / "_coldstart.py"
    phases = ("import", "sdk_import", "client", "build", "save", "load", "close")
    table_rows: list[list[str]] = []
    for mode in ("async", "sync"):
        samples: list[dict[str, float]] = []
        for r in range(runs):
            log(f"cold start {mode} r{r}")
            t0 = time.perf_counter()
            done = subprocess.run(
                [PYTHON, str(script), mode, server.endpoint, f"{tag}/cold/{mode}/r{r}"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            wall = time.perf_counter() - t0
            got: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
            got["process_wall"] = wall
            got["interpreter"] = wall - got["total"]
            samples.append(got)
        section.data[mode] = samples
        med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
        lo = {k: min(s[k] for s in samples) for k in samples[0]}
        hi = {k: max(s[k] for s in samples) for k in samples[0]}

        def cell(
            k: str,
            med: dict[str, float] = med,
            lo: dict[str, float] = lo,
            hi: dict[str, float] = hi,
        ) -> str:
            if lo[k] == hi[k]:
                return fmt(med[k] * 1000, 1)
            return f"{fmt(med[k] * 1000, 1)} ({fmt(lo[k] * 1000, 1)}–{fmt(hi[k] * 1000, 1)})"

        table_rows.append(
            [
                server.name,
                f"s3store {mode}",
                *(cell(k) for k in (*phases, "interpreter", "process_wall")),
            ]
        )
        section.data[f"{mode}_requests"] = samples[0].get("requests", 0)
    section.tables.append(
        table(
            [
                "server",
                "variant",
                *(f"{p} ms" for p in phases),
                "interpreter start+exit ms",
                "process wall ms",
            ],
            table_rows,
        )
    )
    # What dominates the import: python -X importtime.
    done = subprocess.run(
        [
            PYTHON,
            "-X",
            "importtime",
            "-c",
            "import s3store; s3store.AsyncS3SessionStore; s3store.S3SessionStore; s3store.SessionData",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    entries = _importtime(done.stderr)
    by_cumulative = [e for e in entries if e["depth"] <= 2][:10]
    by_self = sorted(entries, key=lambda e: -int(e["self_us"]))[:8]
    section.data["importtime_top_cumulative"] = by_cumulative
    section.data["importtime_top_self"] = by_self
    section.data["importtime_total_us"] = sum(int(e["self_us"]) for e in entries)

    def rows(found: list[dict[str, Any]]) -> list[list[str]]:
        return [
            [
                server.name,
                "  " * int(e["depth"]) + str(e["module"]),
                fmt(e["cumulative_us"] / 1000, 1),
                fmt(e["self_us"] / 1000, 1),
            ]
            for e in found
        ]

    headers = ["server", "module (indent: depth)", "cumulative ms", "self ms"]
    section.tables.append(
        "`python -X importtime -c 'import s3store; s3store.AsyncS3SessionStore; "
        "s3store.S3SessionStore; s3store.SessionData'` "
        f"(sum of self times {section.data['importtime_total_us'] / 1000:.0f} ms), "
        "by cumulative time (depth ≤ 2):\n\n"
        + table(headers, rows(by_cumulative))
        + "\n\nby self time (any depth):\n\n"
        + table(headers, rows(by_self))
    )
    return section


_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def _importtime(stderr: str) -> list[dict[str, Any]]:
    """The entries of -X importtime output with their depth, by cumulative time."""
    out: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if not m:
            continue
        out.append(
            {
                "module": m.group(4),
                "depth": (len(m.group(3)) - 1) // 2,
                "self_us": int(m.group(1)),
                "cumulative_us": int(m.group(2)),
            }
        )
    out.sort(key=lambda e: -int(e["cumulative_us"]))
    return out


# == 6. BLAKE3 ==============================================================================


def scenario_blake3(server: Server, sizes: Sizes, repeat: int, tag: str) -> Section:
    import blake3

    from s3store import AsyncS3SessionStore, cas

    section = Section("blake3", "6. BLAKE3 in the save path", server.name)
    table_rows: list[list[str]] = []
    for size in sizes.blake3_sizes:
        data = _data.big_artifact(size, "hash-only").artifacts[0].content.encode()
        hashes: list[float] = []
        single: list[float] = []
        for _ in range(sizes.blake3_hash_runs):
            t0 = time.perf_counter()
            cas.blake3_hex(data)
            hashes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            blake3.blake3(data).hexdigest()
            single.append(time.perf_counter() - t0)
        saves: list[float] = []
        cpus: list[float] = []
        requests = 0

        async def save(nonce: str, size: int = size) -> tuple[float, float, int]:
            arts = _data.big_artifact(size, nonce)
            async with AsyncS3SessionStore(
                bucket=BUCKET,
                prefix=f"{tag}/blake3",
                endpoint_url=server.endpoint,
                region_name=REGION,
            ) as store:
                await store.load_trace_events("warmup")  # open the connection first
                store.stats.reset()
                with Clock() as clock:
                    await store.save_artifacts(f"b-{nonce}", arts)
                return clock.wall, clock.cpu, store.stats.total_requests

        for r in range(repeat):
            log(f"blake3 {size // _data.MIB} MiB r{r}")
            wall, cpu, requests = asyncio.run(save(uuid.uuid4().hex))
            saves.append(wall)
            cpus.append(cpu)
        hash_med = statistics.median(hashes)
        save_med = statistics.median(saves)
        entry: dict[str, Any] = {
            "size": size,
            "hash_s": hashes,
            "hash_single_thread_s": single,
            "save_artifacts_s": saves,
            "save_artifacts_cpu_s": cpus,
            "save_requests": requests,
            "hash_share": hash_med / save_med,
            "hash_gb_s": size / hash_med / 1e9,
            "hash_single_thread_gb_s": size / statistics.median(single) / 1e9,
        }
        section.data.setdefault("sizes", []).append(entry)
        table_rows.append(
            [
                server.name,
                f"{size // _data.MIB} MiB",
                fmt(hash_med * 1000, 2),
                fmt(entry["hash_gb_s"], 2),
                fmt(entry["hash_single_thread_gb_s"], 2),
                f"{fmt(save_med * 1000, 1)} ({fmt(min(saves) * 1000, 1)}–{fmt(max(saves) * 1000, 1)})",
                str(requests),
                f"{entry['hash_share'] * 100:.1f}%",
            ]
        )
    section.tables.append(
        table(
            [
                "server",
                "artifact",
                "blake3_hex ms",
                "GB/s (cas.blake3_hex)",
                "GB/s (1 thread)",
                "save_artifacts ms",
                "requests",
                "hash share of save",
            ],
            table_rows,
        )
    )
    return section


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


SCENARIOS: dict[str, Callable[[Server, Sizes, int, str], Section]] = {
    "turns": scenario_turns,
    "restore": scenario_restore,
    "artifacts": scenario_artifacts,
    "sweep": scenario_sweep,
    "large": scenario_large,
    "cold": scenario_cold,
    "blake3": scenario_blake3,
}

__all__ = ["FULL", "QUICK", "SCENARIOS", "Section", "Sizes", "asdict_sizes", "plot_sweep"]


def asdict_sizes(sizes: Sizes) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(sizes)
