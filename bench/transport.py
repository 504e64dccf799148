"""The obstore transport against the aioboto3 floor: client CPU and wall time per request.

Saves then loads of a 22 KiB and a 220 KiB session at concurrency 1, 16 and 64 on SeaweedFS
(started and stopped here, on 127.0.0.1, by PID), for four clients:

* ``raw aioboto3``: ``put_object`` / ``get_object`` + read of the exact bytes s3store writes,
  on an aioboto3 client with the store's botocore config (the floor of bench/run.py), reading
  the body as the store does, so botocore checks its CRC32 and length on both sides;
* ``raw obstore``: ``obstore.put_async`` / ``get_async`` + ``bytes_async`` of the same bytes
  on an ``S3Store`` configured as ``transport="obstore"`` configures it;
* ``s3store aioboto3``: ``AsyncS3SessionStore.save`` / ``load`` (the default transport);
* ``s3store obstore``: the same with ``transport="obstore"``.

Every save is one PUT and every load one GET for all four (checked against the counters).
Client CPU is ``time.process_time()`` of this process, which includes the threads of
aiohttp's resolver and obstore's Rust runtime (the server is another process). Each cell is
the median of ``--repeat`` runs of ``--ops`` operations. Run::

    .venv/bin/python bench/transport.py [--ops 128] [--repeat 3] [--levels 1,16,64]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
import _servers  # noqa: E402
from _scenarios import RawAsync, bounded, settings  # noqa: E402

# (label, messages of ~1 KiB): the sweep's 22 KiB session and the restore's 220 KiB one.
SIZES = (("22 KiB", 20), ("220 KiB", 200))
CLIENTS = ("raw aioboto3", "raw obstore", "s3store aioboto3", "s3store obstore")
N_IDS = 16


class RawObstore:
    """The raw obstore floor: the S3Store the obstore transport would build."""

    def __init__(self, server: Any) -> None:
        from s3store._obstore import build_s3store

        self.store = build_s3store(settings(server, ""))
        self.requests = 0

    async def put(self, key: str, body: bytes) -> None:
        import obstore

        await obstore.put_async(self.store, key, body, use_multipart=False)
        self.requests += 1

    async def get(self, key: str) -> bytes:
        import obstore

        result = await obstore.get_async(self.store, key)
        body = bytes(await result.bytes_async())
        self.requests += 1
        return body


async def _timed(
    ops: int, level: int, tasks: list[Callable[[], Awaitable[Any]]]
) -> dict[str, float]:
    gc.collect()  # garbage of the previous cell is not this cell's cost
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await bounded(tasks, level)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"ops_s": ops / wall, "wall_ms": wall / ops * level * 1000, "cpu_us": cpu / ops * 1e6}


async def run_client(
    client: str, server: Any, prefix: str, messages: int, level: int, ops: int
) -> tuple[dict[str, float], dict[str, float]]:
    """(save figures, load figures) of one client at one concurrency level."""
    from s3store import AsyncS3SessionStore, codec
    from s3store.keys import Layout

    rng = random.Random(messages)
    msgs = [_data.message(rng, t) for t in range(messages)]
    sessions = [_data.session(f"c{i:03d}", msgs) for i in range(N_IDS)]
    if client.startswith("s3store"):
        transport = "obstore" if client.endswith("obstore") else "boto3"
        async with AsyncS3SessionStore(
            settings=settings(server, prefix, transport=transport)
        ) as store:
            for s in sessions:  # warm-up: connections, clock, every key exists
                await store.save(s)
            await store.load(sessions[0].id)
            store.stats.reset()
            save = await _timed(
                ops, level, [partial(store.save, sessions[i % N_IDS]) for i in range(ops)]
            )
            assert store.stats.total_requests == ops, store.stats
            store.stats.reset()
            load = await _timed(
                ops, level, [partial(store.load, f"c{i % N_IDS:03d}") for i in range(ops)]
            )
            assert store.stats.total_requests == ops, store.stats
            return save, load
    layout = Layout(prefix, "legacy")
    keys = [layout.session_key(s.id) for s in sessions]
    bodies = [codec.dumps(s) for s in sessions]
    if client == "raw obstore":
        ob = RawObstore(server)
        for key, body in zip(keys, bodies, strict=True):
            await ob.put(key, body)
        await ob.get(keys[0])
        save = await _timed(
            ops, level, [partial(ob.put, keys[i % N_IDS], bodies[i % N_IDS]) for i in range(ops)]
        )
        load = await _timed(ops, level, [partial(ob.get, keys[i % N_IDS]) for i in range(ops)])
        return save, load
    async with RawAsync(server) as raw:
        for key, body in zip(keys, bodies, strict=True):
            await raw.put(key, body)
        await raw.get(keys[0])
        save = await _timed(
            ops,
            level,
            [partial(raw.put, keys[i % N_IDS], bodies[i % N_IDS]) for i in range(ops)],
        )
        load = await _timed(ops, level, [partial(raw.get, keys[i % N_IDS]) for i in range(ops)])
        return save, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=128, help="operations per cell and run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median shown)")
    parser.add_argument("--levels", default="1,16,64", help="concurrency levels")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    _servers.set_local_credentials()
    figures: dict[tuple[str, str, str, int], list[dict[str, float]]] = {}
    with _servers.start("seaweedfs") as server:
        print(f"server: {server.version} at {server.endpoint}", file=sys.stderr)
        for r in range(args.repeat):
            for label, messages in SIZES:
                for level in levels:
                    # Clients interleaved within a repeat, so drift on a shared machine
                    # spreads over all of them.
                    order = list(CLIENTS)
                    random.Random(r * 100 + level).shuffle(order)
                    for client in order:
                        prefix = (
                            f"transport/r{r}/{label.split()[0]}/c{level}/{client.replace(' ', '-')}"
                        )
                        save, load = asyncio.run(
                            run_client(client, server, prefix, messages, level, args.ops)
                        )
                        figures.setdefault((label, "save", client, level), []).append(save)
                        figures.setdefault((label, "load", client, level), []).append(load)
                        print(f"  .. r{r} {label} c{level} {client}", file=sys.stderr, flush=True)
    print_table(figures, levels)
    return 0


def print_table(
    figures: dict[tuple[str, str, str, int], list[dict[str, float]]], levels: list[int]
) -> None:
    def med(runs: list[dict[str, float]], name: str) -> float:
        return statistics.median(run[name] for run in runs)

    print()
    print(
        "| session | op | conc | client | ops/s | wall ms/op | client CPU µs/op | CPU vs raw aioboto3 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, _ in SIZES:
        for op in ("load", "save"):
            for level in levels:
                floor = med(figures[(label, op, "raw aioboto3", level)], "cpu_us")
                for client in CLIENTS:
                    runs = figures[(label, op, client, level)]
                    cpu = med(runs, "cpu_us")
                    print(
                        f"| {label} | {op} | {level} | {client} | {med(runs, 'ops_s'):,.0f} | "
                        f"{med(runs, 'wall_ms'):.2f} | {cpu:,.0f} | {cpu / floor:.2f}× |"
                    )


if __name__ == "__main__":
    sys.exit(main())
