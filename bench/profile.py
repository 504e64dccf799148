"""Profile one session save and one session load: where the client's time goes.

Saves and loads a session (``--size`` bytes, the varied messages of ``bench/codec.py``)
``--ops`` times each through the sync store, and prints a profile of each operation:
pyinstrument's call tree when pyinstrument is installed (it is in the dev extras), else
cProfile's top functions by own time. The default backend is the in-memory object client, so
the profile shows s3store's own CPU (codec, validation, keys, request building); ``--server``
profiles against a local moto or SeaweedFS server it starts and stops, with the boto3 stack
included. Run::

    .venv/bin/python bench/profile.py [--size 22528] [--ops 300] [--server memory|moto|seaweedfs]
                                      [--cprofile] [--html DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Callable, Iterator
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

from s3store import S3SessionStore, codec  # noqa: E402
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


def profile(fn: Callable[[], Any], ops: int, use_cprofile: bool, html: Path | None) -> str:
    if not use_cprofile:
        try:
            from pyinstrument import Profiler
        except ImportError:
            use_cprofile = True
    if use_cprofile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(ops):
            fn()
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        return out.getvalue()
    profiler = Profiler(interval=0.0001)
    profiler.start()
    for _ in range(ops):
        fn()
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
    args = parser.parse_args(argv)

    raw = session_bytes(args.size)
    session = codec.loads(SessionData, raw)
    with open_store(args.server) as store:
        store.save(session)
        store.load(session.id)
        for name, fn in (
            ("save", lambda: store.save(session)),
            ("load", lambda: store.load(session.id)),
        ):
            t0 = time.perf_counter()
            c0 = time.process_time()
            for _ in range(20):
                fn()
            wall = (time.perf_counter() - t0) / 20 * 1e3
            cpu = (time.process_time() - c0) / 20 * 1e3
            print(
                f"== {name} of a {len(raw) / 1024:.0f} KiB session on {args.server}: "
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
