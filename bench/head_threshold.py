"""Where does a HEAD before a blob upload pay? (``StoreSettings.blob_head_threshold``)

A store that does not know a blob either PUTs it create-only (``If-None-Match: *``; when the
blob is already there the server answers 412 after the body was sent, and a HEAD follows) or,
for blobs of at least ``blob_head_threshold`` bytes, HEADs first and PUTs only when the blob
is missing. For each size this saves a one-artifact ArtifactStore with a fresh store (empty
known-blob cache, as a fresh process) in both modes:

* hit: the content is already in the pool (another store saved it a moment ago);
* miss: the content is new.

and prints the median wall time per ``save_artifacts`` (manifest PUT included, the same in
both modes) and the bytes sent. Run (starts and stops SeaweedFS on 127.0.0.1 by PID)::

    .venv/bin/python bench/head_threshold.py [--server seaweedfs] [--ops 12] [--sizes 4,64,256]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402
import _servers  # noqa: E402
from _scenarios import settings  # noqa: E402

SIZES = (4 * 1024, 16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024)
NEVER = 2**62  # threshold: never HEAD first (create-only PUT)
ALWAYS = 0  # threshold: always HEAD first


async def _save(server: Any, prefix: str, threshold: int, sid: str, nonce: str, size: int) -> Any:
    from s3store import AsyncS3SessionStore

    artifacts = _data.big_artifact(size, nonce)
    store = AsyncS3SessionStore(
        settings=settings(server, prefix, blob_head_threshold=threshold, inline_threshold=1024)
    )
    async with store:
        await store.exists("warm-up")  # connection set up outside the timing
        store.stats.reset()
        t0 = time.perf_counter()
        await store.save_artifacts(sid, artifacts)
        wall = time.perf_counter() - t0
        snap = store.stats.snapshot()
    return wall, snap


async def measure(
    server: Any, ops: int, tag: str, sizes: tuple[int, ...] = SIZES
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size in sizes:
        row: dict[str, Any] = {"size": size}
        for mode, threshold in (("head_first", ALWAYS), ("create_only", NEVER)):
            prefix = f"{tag}/head/{size}"
            hit_walls: list[float] = []
            miss_walls: list[float] = []
            hit_up: list[int] = []
            miss_up: list[int] = []
            hit_req: list[int] = []
            miss_req: list[int] = []
            for i in range(ops):
                nonce = f"hit-{size}-{mode}-{i}"
                # seed the pool with another store, then save the same content fresh
                await _save(server, prefix, NEVER, f"seed-{mode}-{i}", nonce, size)
                wall, snap = await _save(server, prefix, threshold, f"hit-{mode}-{i}", nonce, size)
                hit_walls.append(wall)
                hit_up.append(int(snap["bytes_up"]))
                hit_req.append(int(snap["total_requests"]))
                miss = f"miss-{size}-{mode}-{i}"
                wall, snap = await _save(server, prefix, threshold, f"miss-{mode}-{i}", miss, size)
                miss_walls.append(wall)
                miss_up.append(int(snap["bytes_up"]))
                miss_req.append(int(snap["total_requests"]))
            row[mode] = {
                "hit_ms": statistics.median(hit_walls) * 1e3,
                "miss_ms": statistics.median(miss_walls) * 1e3,
                "hit_bytes_up": statistics.median(hit_up),
                "miss_bytes_up": statistics.median(miss_up),
                "hit_requests": statistics.median(hit_req),
                "miss_requests": statistics.median(miss_req),
            }
        rows.append(row)
        print(_line(row), flush=True)
    return rows


HEADER = (
    f"{'blob':>8} | {'hit ms HEAD/PUT':>16} | {'hit KiB up HEAD/PUT':>20} | "
    f"{'miss ms HEAD/PUT':>17} | {'break-even hit rate':>19}"
)


def _line(row: dict[str, Any]) -> str:
    h, p = row["head_first"], row["create_only"]
    saved_on_hit = p["hit_ms"] - h["hit_ms"]
    lost_on_miss = h["miss_ms"] - p["miss_ms"]
    if saved_on_hit <= 0:
        breakeven = "never"
    elif lost_on_miss <= 0:
        breakeven = "always"
    else:
        breakeven = f"{lost_on_miss / (lost_on_miss + saved_on_hit):.0%}"
    size = row["size"]
    label = f"{size // 1024} KiB" if size < 1024 * 1024 else f"{size // (1024 * 1024)} MiB"
    return (
        f"{label:>8} | {h['hit_ms']:7.1f} / {p['hit_ms']:6.1f} | "
        f"{h['hit_bytes_up'] / 1024:8.1f} / {p['hit_bytes_up'] / 1024:9.1f} | "
        f"{h['miss_ms']:7.1f} / {p['miss_ms']:7.1f} | {breakeven:>19}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--server", choices=["moto", "seaweedfs"], default="seaweedfs")
    parser.add_argument("--ops", type=int, default=12, help="saves per size, mode and case")
    parser.add_argument(
        "--sizes", default=None, help="comma-separated KiB (default 4,16,64,256,1024,4096)"
    )
    args = parser.parse_args(argv)
    _servers.set_local_credentials()
    tag = f"head-{int(time.time())}"
    with _servers.start(args.server) as server:
        print(f"{server.version}; median of {args.ops} saves; HEAD = head first, PUT = create-only")
        print(HEADER)
        sizes = tuple(int(k) * 1024 for k in args.sizes.split(",")) if args.sizes else SIZES
        asyncio.run(measure(server, args.ops, tag, sizes))
    print(
        "break-even hit rate: the share of blobs already in the pool above which heading "
        "first saves time"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
