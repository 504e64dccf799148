"""Codec throughput in MB/s: s3store's codec next to json and orjson on the same bytes.

For sessions of about 22 KiB, 220 KiB and 5 MB (the varied messages of
``bench/bench_codec.py``: text, tool_use with nested input, tool_result blocks, non-ASCII
and escaped characters), times

* decode: ``codec.loads(SessionData, raw)`` (parse + validate + shape record), ``json.loads``
  and ``orjson.loads`` of the same bytes (parse only, no model);
* encode: ``codec.dumps(session)`` (serde_json-pretty bytes), ``json.dumps(value, indent=2,
  ensure_ascii=False).encode()`` and ``orjson.dumps(value, option=OPT_INDENT_2)`` of the
  parsed value;

and prints the median throughput (document bytes / median seconds) of ``--repeats`` runs, each
run looping until at least ``--min-time`` seconds passed. ``--clock cpu`` times with
``time.process_time`` (steadier on a shared machine) and adds the codec's ratio to
:data:`ORIGINAL`, the CPU-time figures of the codec before its fast path (README, 2026-12-03),
which were measured that way. Run::

    .venv/bin/python bench/codec.py [--repeats 7] [--clock wall|cpu] [--json out.json]

``bench/run.py`` calls :func:`run` and prints the same table. orjson is optional here: its
columns show ``-`` when it is not installed.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_codec import build_session  # noqa: E402

from s3store import codec  # noqa: E402
from s3store.models import SessionData  # noqa: E402

orjson: Any
try:
    import orjson
except ImportError:  # pragma: no cover - optional
    orjson = None

#: (label, target bytes)
SIZES: tuple[tuple[str, int], ...] = (
    ("22 KiB", 22 * 1024),
    ("220 KiB", 220 * 1024),
    ("5 MB", 5_000_000),
)

#: Codec MB/s before the fast path (CPU time, ``process_time``), per size: (loads, dumps).
ORIGINAL: dict[str, tuple[float, float]] = {
    "22 KiB": (142.0, 112.0),
    "220 KiB": (98.0, 91.0),
    "5 MB": (67.0, 68.0),
}


def session_bytes(target: int, *, older: bool = False) -> bytes:
    """Canonical (codec-written) bytes of a session of about ``target`` bytes.

    ``older``: as an older a3s-code writes it, without the top-level ``cost_records`` and
    ``tasks`` (their absence is recorded and kept, so these take the shape-recording path).
    """
    # 2,000 messages are about 5.0 MB; scale linearly, then trim to the closest count.
    per_message = 2500
    messages = max(2, round(target / per_message))
    for _ in range(6):
        raw = codec.dumps(codec.loads(SessionData, _plain(messages, older=older)))
        ratio = target / len(raw)
        if 0.97 < ratio < 1.03:
            break
        messages = max(2, round(messages * ratio))
    return raw


def _plain(messages: int, *, older: bool = False) -> bytes:
    document = build_session(messages)
    if older:
        for key in ("cost_records", "tasks"):
            document.pop(key, None)
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


def _time(
    fn: Callable[[], object], repeats: int, min_time: float, clock: Callable[[], float]
) -> float:
    """Median seconds per call over ``repeats`` runs of at least ``min_time`` seconds each."""
    fn()
    per_call: list[float] = []
    for _ in range(repeats):
        n = 0
        start = clock()
        while True:
            fn()
            n += 1
            elapsed = clock() - start
            if elapsed >= min_time:
                break
        per_call.append(elapsed / n)
    return statistics.median(per_call)


def measure(
    raw: bytes, repeats: int, min_time: float, clock: Callable[[], float] = time.perf_counter
) -> dict[str, float | None]:
    """Seconds per call of each step on ``raw``."""
    session = codec.loads(SessionData, raw)
    if codec.dumps(session) != raw:
        raise SystemExit("codec round trip is not byte-identical")
    value = json.loads(raw)
    steps: dict[str, Callable[[], object] | None] = {
        "codec.loads": lambda: codec.loads(SessionData, raw),
        "json.loads": lambda: json.loads(raw),
        "orjson.loads": (lambda: orjson.loads(raw)) if orjson is not None else None,
        "codec.dumps": lambda: codec.dumps(session),
        "json.dumps": lambda: json.dumps(value, indent=2, ensure_ascii=False).encode(),
        "orjson.dumps": (
            (lambda: orjson.dumps(value, option=orjson.OPT_INDENT_2))
            if orjson is not None
            else None
        ),
    }
    out: dict[str, float | None] = {}
    gc.collect()
    for name, fn in steps.items():
        out[name] = None if fn is None else _time(fn, repeats, min_time, clock)
    return out


def run(
    repeats: int = 7, min_time: float = 0.2, clock: str = "wall", older: bool = False
) -> dict[str, Any]:
    """Measure every size; returns ``{"sizes": [...], "table": str}``."""
    timer = time.process_time if clock == "cpu" else time.perf_counter
    rows: list[dict[str, Any]] = []
    for label, target in SIZES:
        raw = session_bytes(target, older=older)
        seconds = measure(raw, repeats, min_time, timer)
        rows.append({"label": label, "bytes": len(raw), "seconds": seconds})
    return {"sizes": rows, "table": render(rows, ratios=clock == "cpu"), "clock": clock}


def _mbps(nbytes: int, seconds: float | None) -> str:
    return "-" if seconds is None else f"{nbytes / seconds / 1e6:.0f}"


def _ratio(label: str, which: int, nbytes: int, seconds: float | None) -> str:
    original = ORIGINAL.get(label)
    if original is None or seconds is None:
        return "-"
    return f"{nbytes / seconds / 1e6 / original[which]:.1f}x"


def render(rows: list[dict[str, Any]], ratios: bool = False) -> str:
    head = (
        f"{'session':<18}{'codec.loads':>12}{'json.loads':>12}{'orjson.loads':>14}"
        f"{'codec.dumps':>13}{'json.dumps':>12}{'orjson.dumps':>14}"
    )
    if ratios:
        head += f"{'loads/orig':>12}{'dumps/orig':>12}"
    clock = "CPU time" if ratios else "median time"
    lines = [f"codec throughput, MB/s (document bytes / {clock}; higher is better)", head]
    for row in rows:
        s = row["seconds"]
        n = row["bytes"]
        size = f"{row['label']} ({n / 1024:.0f} KiB)" if n < 1e6 else f"{row['label']}"
        lines.append(
            f"{size:<18}{_mbps(n, s['codec.loads']):>12}{_mbps(n, s['json.loads']):>12}"
            f"{_mbps(n, s['orjson.loads']):>14}{_mbps(n, s['codec.dumps']):>13}"
            f"{_mbps(n, s['json.dumps']):>12}{_mbps(n, s['orjson.dumps']):>14}"
            + (
                f"{_ratio(row['label'], 0, n, s['codec.loads']):>12}"
                f"{_ratio(row['label'], 1, n, s['codec.dumps']):>12}"
                if ratios
                else ""
            )
        )
    if ratios:
        lines.append(
            "loads/orig, dumps/orig: codec MB/s over ORIGINAL (codec before its fast path, "
            "CPU time)"
        )
    lines.append(
        "json.dumps: indent=2, ensure_ascii=False, encoded; orjson.dumps: OPT_INDENT_2; "
        "json/orjson parse or write plain values, the codec validates models"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per run")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--clock", choices=["wall", "cpu"], default="wall", help="cpu: process_time + ratios"
    )
    parser.add_argument(
        "--older",
        action="store_true",
        help="sessions as an older a3s-code writes them (no cost_records, tasks)",
    )
    args = parser.parse_args(argv)
    result = run(args.repeats, args.min_time, args.clock, args.older)
    print(result["table"])
    if args.json is not None:
        args.json.write_text(json.dumps(result["sizes"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
