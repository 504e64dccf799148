"""Profile one session save and one session load: where the client's time goes.

Saves and loads a session (``--size`` bytes, the varied messages of ``bench/codec.py``)
``--ops`` times each through the sync store, and prints a profile of each operation:
pyinstrument's call tree when pyinstrument is installed (it is in the dev extras), else
cProfile's top functions by own time. The default backend is the in-memory object client, so
the profile shows s3store's own CPU (codec, validation, keys, request building); ``--server``
profiles against a local moto or SeaweedFS server it starts and stops, with the boto3 stack
included; ``--codec`` profiles ``codec.dumps`` and ``codec.loads`` alone, without a store.
``--async`` profiles ``AsyncS3SessionStore`` instead, and with a server also the raw
aioboto3 ``put_object`` / ``get_object`` + read of the same bytes on a client with the store's
botocore config, read as the store reads it (the floor of bench/transport.py), so the two
profiles can be set side by side.
Run::

    .venv/bin/python bench/profile.py [--size 22528] [--ops 300] [--server memory|moto|seaweedfs]
                                      [--codec] [--async] [--cprofile] [--html DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# This file is named like the stdlib's ``profile``, which cProfile imports: keep bench/ off
# the path while the stdlib profilers load.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
import cProfile  # noqa: E402
import pstats  # noqa: E402

sys.path.insert(0, str(HERE))

from codec import session_bytes  # noqa: E402

from s3store import AsyncS3SessionStore, S3SessionStore, codec  # noqa: E402
from s3store.config import StoreSettings, client_kwargs  # noqa: E402
from s3store.models import SessionData  # noqa: E402


@contextlib.contextmanager
def open_store(server: str) -> Iterator[S3SessionStore]:
    if server == "memory":
        from s3store.testing import MemoryBackend, MemoryObjectClient

        with S3SessionStore(
            client=MemoryObjectClient("bench", backend=MemoryBackend()), prefix="profile"
        ) as store:
            yield store
        return
    import _servers

    _servers.set_local_credentials()
    with (
        _servers.start(server) as running,
        S3SessionStore(
            bucket=_servers.BUCKET,
            prefix=f"profile-{int(time.time())}",
            endpoint_url=running.endpoint,
            region_name="us-east-1",
        ) as store,
    ):
        yield store


@contextlib.contextmanager
def open_async(server: str, runner: asyncio.Runner) -> Iterator[tuple[AsyncS3SessionStore, Any]]:
    """An async store and, on a server, a raw aioboto3 client with the store's config."""
    if server == "memory":
        from s3store.testing import AsyncMemoryObjectClient, MemoryBackend

        store = AsyncS3SessionStore(
            client=AsyncMemoryObjectClient("bench", backend=MemoryBackend()), prefix="profile"
        )
        runner.run(store.__aenter__())
        try:
            yield store, None
        finally:
            runner.run(store.__aexit__(None, None, None))
        return
    import _servers
    import aioboto3

    _servers.set_local_credentials()
    with _servers.start(server) as running:
        settings = StoreSettings(
            bucket=_servers.BUCKET,
            prefix=f"profile-{int(time.time())}",
            endpoint_url=running.endpoint,
            region_name="us-east-1",
        )
        store = AsyncS3SessionStore(settings=settings)
        raw_cm = aioboto3.Session().client("s3", **client_kwargs(settings))
        raw = runner.run(raw_cm.__aenter__())
        runner.run(store.__aenter__())
        try:
            yield store, raw
        finally:
            runner.run(store.__aexit__(None, None, None))
            runner.run(raw_cm.__aexit__(None, None, None))


async def _raw_put(raw: Any, key: str, body: bytes) -> None:
    await raw.put_object(Bucket=_bucket(), Key=key, Body=body)


async def _raw_get(raw: Any, key: str) -> bytes:
    # Body.read() as the store reads it: ``async with response["Body"]`` would hand back
    # aiohttp's response and skip botocore's CRC32 and length checks (see bench/transport.py).
    response = await raw.get_object(Bucket=_bucket(), Key=key)
    stream = response["Body"]
    try:
        body: bytes = await stream.read()
    finally:
        stream.close()
    return body


def _batched(runner: asyncio.Runner, op: Callable[[], Awaitable[Any]]) -> Callable[[int], None]:
    async def run(n: int) -> None:
        for _ in range(n):
            await op()

    return lambda n: runner.run(run(n))


def _repeated(op: Callable[[], Any]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            op()

    return run


def _bucket() -> str:
    import _servers

    return _servers.BUCKET


def profile(fn: Callable[[int], None], ops: int, use_cprofile: bool, html: Path | None) -> str:
    if not use_cprofile:
        try:
            from pyinstrument import Profiler
        except ImportError:
            use_cprofile = True
    if use_cprofile:
        prof = cProfile.Profile()
        prof.enable()
        fn(ops)
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        return out.getvalue()
    profiler = Profiler(interval=0.0001)
    profiler.start()
    fn(ops)
    profiler.stop()
    if html is not None:
        html.write_text(profiler.output_html())
    return str(profiler.output_text(unicode=True, color=False, show_all=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=22 * 1024, help="session bytes (about)")
    parser.add_argument("--ops", type=int, default=300, help="saves and loads to profile")
    parser.add_argument("--server", choices=["memory", "moto", "seaweedfs"], default="memory")
    parser.add_argument("--cprofile", action="store_true", help="cProfile even if pyinstrument")
    parser.add_argument("--html", type=Path, default=None, help="write pyinstrument HTML here")
    parser.add_argument("--codec", action="store_true", help="codec.dumps/loads alone, no store")
    parser.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="AsyncS3SessionStore, next to raw aioboto3 get/put of the same bytes on a server",
    )
    args = parser.parse_args(argv)

    raw = session_bytes(args.size)
    session = codec.loads(SessionData, raw)
    with contextlib.ExitStack() as stack:
        # (name, run n operations)
        operations: tuple[tuple[str, Callable[[int], None]], ...]
        where = "the codec alone" if args.codec else args.server
        if args.codec:
            operations = (
                ("codec.dumps", _repeated(lambda: codec.dumps(session))),
                ("codec.loads", _repeated(lambda: codec.loads(SessionData, raw))),
            )
        elif args.use_async:
            # One runner.run per batch of ops, not per op: on Python 3.11 each run() formats
            # its SIGINT handler, the task's bound method, and with it the repr of the last
            # result (a whole SessionData), which would swamp the profile.
            runner = stack.enter_context(asyncio.Runner())
            astore, client = stack.enter_context(open_async(args.server, runner))
            where = f"{args.server}, async"
            key = astore.layout.session_key(session.id)
            body = codec.dumps(session)
            runner.run(astore.save(session))
            runner.run(astore.load(session.id))
            batches: dict[str, Callable[[], Awaitable[Any]]] = {
                "save": lambda: astore.save(session),
                "load": lambda: astore.load(session.id),
            }
            if client is not None:
                raw_key = f"{key}.raw"
                runner.run(_raw_put(client, raw_key, body))
                batches["raw put_object"] = lambda: _raw_put(client, raw_key, body)
                batches["raw get_object"] = lambda: _raw_get(client, raw_key)
            operations = tuple((name, _batched(runner, op)) for name, op in batches.items())
        else:
            store = stack.enter_context(open_store(args.server))
            store.save(session)
            store.load(session.id)
            operations = (
                ("save", _repeated(lambda: store.save(session))),
                ("load", _repeated(lambda: store.load(session.id))),
            )
        for name, fn in operations:
            t0 = time.perf_counter()
            c0 = time.process_time()
            fn(20)
            wall = (time.perf_counter() - t0) / 20 * 1e3
            cpu = (time.process_time() - c0) / 20 * 1e3
            print(
                f"== {name} of a {len(raw) / 1024:.0f} KiB session on {where}: "
                f"{wall:.2f} ms wall, {cpu:.2f} ms CPU per op (20 ops, unprofiled); "
                f"profile of {args.ops} ops:"
            )
            html = args.html / f"{name}.html" if args.html is not None else None
            if html is not None:
                args.html.mkdir(parents=True, exist_ok=True)
            print(profile(fn, args.ops, args.cprofile, html))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
