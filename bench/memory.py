"""Peak extra memory of ``save_artifacts`` for one large artifact (issue 13.5).

    .venv/bin/python bench/memory.py              # 256 MiB, every scenario, one table
    .venv/bin/python bench/memory.py --mib 64     # smaller content

Each scenario runs in a fresh interpreter: it builds the artifact (a ``str`` of ``--mib``
MiB), then measures, over one ``save_artifacts`` call, the peak of Python allocations above
the level before the call (tracemalloc) and the peak resident set above the level before
the call (``VmHWM`` after resetting it through ``/proc/self/clear_refs``; tracemalloc cannot
see allocations made outside Python's allocator, e.g. by OpenSSL or aiohttp's C parts).
"Extra" is therefore everything the save adds on top of the caller's content: its UTF-8
bytes (the blob body, 1x), the parts in flight, request buffers, and, for the in-memory
client, the bucket itself.

Scenarios:

- ``memory-discard``: the async store over an in-memory client that keeps part sizes but
  drops part bodies (a server elsewhere): the store's own footprint.
- ``memory``: the plain in-memory client; it also holds the parts and then the assembled
  object in this process (about 2x the content at completion), so the figure includes the
  bucket.
- ``moto-async`` / ``moto-sync``: aioboto3 / boto3 against a moto server (a separate process,
  started here), over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1024 * 1024
SCENARIOS = ("memory-discard", "memory", "moto-async", "moto-sync")
BUCKET = "s3store-bench-memory"


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _artifacts(content: str) -> Any:
    from s3store.models import ArtifactStore

    digest = "0" * 64
    return ArtifactStore.model_validate(
        {
            "artifacts": [
                {
                    "artifact_id": f"tool-output:bash:{digest}",
                    "artifact_uri": f"a3s://tool-output/bash/{digest}",
                    "tool_name": "bash",
                    "content": content,
                    "original_bytes": len(content),
                    "shown_bytes": len(content),
                }
            ],
            "retained_uris": [],
        }
    )


def _discarding_client() -> Any:
    from s3store._async.client import AsyncMemoryObjectClient

    class Discarding(AsyncMemoryObjectClient):
        """Keeps no part bodies: what a store pays when the server is elsewhere."""

        async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
            await super().upload_part(key, upload_id, number, b"")
            return f'"{number}"'

    return Discarding(BUCKET)


def run_one(scenario: str, mib: int, endpoint: str | None) -> dict[str, Any]:
    """Measure one scenario in this process; returns the figures."""
    from s3store import AsyncS3SessionStore, S3SessionStore
    from s3store._async.client import AsyncMemoryObjectClient

    content = "z" * (mib * MIB)
    artifacts = _artifacts(content)
    # A prefix of its own: a blob another scenario uploaded would be reused, not sent.
    options: dict[str, Any] = {"prefix": f"bench-{scenario}-{os.getpid()}"}
    stats: Any = None

    async def save_async(client: Any) -> None:
        nonlocal stats
        async with AsyncS3SessionStore(client=client, bucket=BUCKET, **options) as store:
            await store.save_artifacts("big", artifacts)
            stats = store.stats

    def measure(fn: Any) -> tuple[int, int, float]:
        tracemalloc.start()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        hwm_ok = _reset_hwm()
        rss_before = _status("VmRSS")
        started = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_extra = _status("VmHWM") - rss_before if hwm_ok else -1
        return peak - base, rss_extra, elapsed

    if scenario == "memory-discard":
        client = _discarding_client()
        py_extra, rss_extra, elapsed = measure(lambda: asyncio.run(save_async(client)))
    elif scenario == "memory":
        client = AsyncMemoryObjectClient(BUCKET)
        py_extra, rss_extra, elapsed = measure(lambda: asyncio.run(save_async(client)))
    elif scenario == "moto-async":
        os.environ["AWS_ENDPOINT_URL"] = str(endpoint)
        options["endpoint_url"] = endpoint

        async def build_and_save() -> None:
            nonlocal stats
            async with AsyncS3SessionStore(bucket=BUCKET, **options) as store:
                await store.save_artifacts("big", artifacts)
                stats = store.stats

        py_extra, rss_extra, elapsed = measure(lambda: asyncio.run(build_and_save()))
    elif scenario == "moto-sync":
        with S3SessionStore(bucket=BUCKET, endpoint_url=endpoint, **options) as store:
            store.health_check()  # builds the client outside the measurement
            py_extra, rss_extra, elapsed = measure(lambda: store.save_artifacts("big", artifacts))
            stats = store.stats
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    return {
        "scenario": scenario,
        "content_mib": mib,
        "python_extra_mib": py_extra / MIB,
        "rss_extra_mib": rss_extra / MIB if rss_extra >= 0 else None,
        "seconds": elapsed,
        "requests": dict(stats.requests) if stats is not None else {},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="artifact size in MiB (256)")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="default: all")
    parser.add_argument("--one", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.mib, args.endpoint)))
        return 0

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testsecret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    scenarios = args.scenario or list(SCENARIOS)
    server: Any = None
    endpoint = None
    rows = []
    try:
        if any(s.startswith("moto") for s in scenarios):
            from s3store.devserver import MotoServer, ensure_bucket, s3_client

            server = MotoServer()
            server.start()
            endpoint = server.endpoint
            ensure_bucket(
                s3_client(endpoint, os.environ["AWS_ACCESS_KEY_ID"], "x"),
                BUCKET,
            )
        for scenario in scenarios:
            command = [sys.executable, __file__, "--one", scenario, "--mib", str(args.mib)]
            if endpoint:
                command += ["--endpoint", endpoint]
            done = subprocess.run(
                command, capture_output=True, text=True, check=True, env={**os.environ}
            )
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        if server is not None:
            server.stop()

    header = ["scenario", "content", "extra (python)", "x content", "extra (RSS)", "x content"]
    table = [header]
    for row in rows:
        mib = row["content_mib"]
        rss = row["rss_extra_mib"]
        table.append(
            [
                row["scenario"],
                f"{mib} MiB",
                f"{row['python_extra_mib']:.0f} MiB",
                f"{row['python_extra_mib'] / mib:.2f}x",
                "-" if rss is None else f"{rss:.0f} MiB",
                "-" if rss is None else f"{rss / mib:.2f}x",
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    parts = next((r["requests"].get("UploadPart") for r in rows if r["requests"]), None)
    print(
        f"\nsave_artifacts of one {args.mib} MiB artifact, default settings (part_size 8 MiB, "
        f"max_concurrency 16): {parts} parts; extra = peak above the level before the call"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
