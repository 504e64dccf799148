"""Growth scenario (issue 20): one session grown to 2,000 messages of about 1 KiB, saved
every turn, in whole-document mode and in journal mode, side by side.

    .venv/bin/python bench/growth.py [--server memory,moto,seaweedfs] [--messages 2000]
                                     [--compact-every 32]

For each server and mode it prints, at 10 / 100 / 500 / 1,000 / 2,000 messages: the bytes
sent and requests of the save that reached that length, and the mean per save since the
previous mark (compaction amortised in). Then the restore of the full session by a fresh
store (a new process has nothing cached): requests, bytes down, time. Every turn appends
one message and changes ``updated_at``, as an agent turn does. The in-memory client counts
requests and bytes exactly as on S3 (no network: its times are CPU only).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
import _servers  # noqa: E402

from s3store import S3SessionStore, codec  # noqa: E402
from s3store.testing import MemoryBackend, MemoryObjectClient  # noqa: E402

MARKS = (10, 100, 500, 1000, 2000)


@contextmanager
def store_factory(server: str) -> Iterator[Any]:
    if server == "memory":
        backend = MemoryBackend()
        backend.create_bucket("bench")

        def make(prefix: str, **options: Any) -> S3SessionStore:
            client = MemoryObjectClient("bench", backend=backend)
            return S3SessionStore(client=client, prefix=prefix, **options)

        yield make
        return
    _servers.set_local_credentials()
    with _servers.start(server) as running:
        global _RUNNING
        _RUNNING = running

        def make(prefix: str, **options: Any) -> S3SessionStore:
            return S3SessionStore(
                bucket=_servers.BUCKET,
                prefix=prefix,
                endpoint_url=running.endpoint,
                region_name=_servers.REGION,
                **options,
            )

        yield make


def grow(make: Any, prefix: str, messages: int, options: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(7)
    store = make(prefix, **options)
    data = _data.session("growth")
    marks: dict[int, tuple[int, int, float, float]] = {}
    window_bytes = window_requests = 0
    window_turns = 0
    total_bytes = total_requests = 0
    started = time.perf_counter()
    for turn in range(messages):
        msgs = [*data.messages, _data.message(rng, turn)]
        data = data.model_copy(update={"messages": msgs, "updated_at": 1_700_000_000 + turn})
        up, requests = store.stats.bytes_up, store.stats.total_requests
        store.save(data)
        turn_bytes = store.stats.bytes_up - up
        turn_requests = store.stats.total_requests - requests
        window_bytes += turn_bytes
        window_requests += turn_requests
        window_turns += 1
        total_bytes += turn_bytes
        total_requests += turn_requests
        if turn + 1 in MARKS:
            marks[turn + 1] = (
                turn_bytes,
                turn_requests,
                window_bytes / window_turns,
                window_requests / window_turns,
            )
            window_bytes = window_requests = window_turns = 0
    elapsed = time.perf_counter() - started
    fresh = make(prefix, **options)
    t0 = time.perf_counter()
    loaded = fresh.load("growth")
    restore_time = time.perf_counter() - t0
    assert loaded is not None
    assert codec.dumps(loaded) == codec.dumps(data), "restore differs from what was saved"
    return {
        "marks": marks,
        "total_bytes": total_bytes,
        "total_requests": total_requests,
        "save_seconds": elapsed,
        "restore_requests": fresh.stats.total_requests,
        "restore_bytes": fresh.stats.bytes_down,
        "restore_seconds": restore_time,
        "document_bytes": len(codec.dumps(data)),
    }


_RUNNING: Any = None


def grow_strands(prefix: str, messages: int) -> dict[str, Any] | None:
    """strands' S3SessionManager + Agent: one object per message, grown and restored."""
    import _scenarios
    from _measure import Counter

    if _RUNNING is None or _scenarios.strands_unavailable() is not None:
        return None
    rng = random.Random(7)
    counter = Counter()
    _, agent = _scenarios.strands_agent(_RUNNING, prefix, "growth", counter)
    marks: dict[int, tuple[int, int, float, float]] = {}
    window = [0, 0, 0]
    total_bytes = total_requests = 0
    started = time.perf_counter()
    for turn in range(messages):
        up, requests = counter.bytes_up, counter.requests
        _scenarios.strands_add_message(agent, _data.strands_message(rng, turn), turn)
        b, r = counter.bytes_up - up, counter.requests - requests
        window[0] += b
        window[1] += r
        window[2] += 1
        total_bytes += b
        total_requests += r
        if turn + 1 in MARKS:
            marks[turn + 1] = (b, r, window[0] / window[2], window[1] / window[2])
            window = [0, 0, 0]
    elapsed = time.perf_counter() - started
    fresh = Counter()
    t0 = time.perf_counter()
    _, restored = _scenarios.strands_agent(_RUNNING, prefix, "growth", fresh)
    restore_time = time.perf_counter() - t0
    assert len(restored.messages) == messages
    return {
        "marks": marks,
        "total_bytes": total_bytes,
        "total_requests": total_requests,
        "save_seconds": elapsed,
        "restore_requests": fresh.requests,
        "restore_bytes": fresh.bytes_down,
        "restore_seconds": restore_time,
        "document_bytes": 0,
    }


def human(n: float) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="memory,moto")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--compact-every", type=int, default=32)
    args = parser.parse_args(argv)
    modes = {
        "whole-document": {},
        "journal": {
            "journal": True,
            "journal_compact_every": args.compact_every,
            "journal_compact_bytes": 1 << 30,
        },
    }
    for server in args.server.split(","):
        with store_factory(server) as make:
            results = {
                name: grow(make, f"growth-{name}", args.messages, options)
                for name, options in modes.items()
            }
            strands = grow_strands("growth-strands", args.messages)
            if strands is not None:
                results["strands S3SessionManager"] = strands
        print(f"\n## {server}: one session, {args.messages} messages of ~1 KiB, a save per turn")
        print(
            "| messages | mode | this save: bytes up | requests "
            "| mean per save since last mark: bytes up | requests |"
        )
        print("|---:|---|---:|---:|---:|---:|")
        for mark in MARKS:
            for name, result in results.items():
                if mark in result["marks"]:
                    b, r, mb, mr = result["marks"][mark]
                    print(f"| {mark} | {name} | {human(b)} | {r} | {human(mb)} | {mr:.2f} |")
        print(
            "\n| mode | all saves: bytes up | requests | time | restore: requests | bytes down | time |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, result in results.items():
            print(
                f"| {name} | {human(result['total_bytes'])} | {result['total_requests']} "
                f"| {result['save_seconds']:.1f} s | {result['restore_requests']} "
                f"| {human(result['restore_bytes'])} | {result['restore_seconds'] * 1000:.0f} ms |"
            )
        doc = next(iter(results.values()))["document_bytes"]
        print(f"\n(final document: {human(doc)}; journal compaction every {args.compact_every})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
