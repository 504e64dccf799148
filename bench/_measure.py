"""Measurement plumbing: one timed run, rows of repeated runs, request counters, tables."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Measure:
    """One timed run of one variant."""

    wall: float
    cpu: float
    ops: int
    requests: int
    bytes_up: int
    bytes_down: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.wall if self.wall > 0 else 0.0


@dataclass
class Row:
    """A variant of a scenario on one server, over the repeats."""

    scenario: str
    server: str
    variant: str
    concurrency: int | None = None
    runs: list[Measure] = field(default_factory=list)
    note: str = ""
    error: str | None = None
    floor: str | None = None
    """Variant name of the raw floor this row is compared with (same scenario and server)."""

    def median(self, name: str) -> float:
        values = self.values(name)
        return statistics.median(values) if values else float("nan")

    def values(self, name: str) -> list[float]:
        out: list[float] = []
        for run in self.runs:
            if name == "ops_per_s":
                out.append(run.ops_per_s)
            elif name in run.extra:
                out.append(run.extra[name])
            elif hasattr(run, name):
                out.append(float(getattr(run, name)))
        return out

    def spread(self, name: str) -> tuple[float, float]:
        values = self.values(name)
        return (min(values), max(values)) if values else (float("nan"), float("nan"))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ops_per_s"] = [r.ops_per_s for r in self.runs]
        out["median"] = {
            name: self.median(name)
            for name in ("wall", "cpu", "ops_per_s", "requests", "bytes_up", "bytes_down")
        }
        return out


class Clock:
    """Wall time (perf_counter) and process CPU time (process_time) of a block."""

    wall = 0.0
    cpu = 0.0

    def __enter__(self) -> Clock:
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        self.cpu = time.process_time() - self._c0


class Counter:
    """Requests and bytes counted by the caller (raw floor) or by botocore hooks (strands)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.by_method: dict[str, int] = {}

    def add(self, method: str, up: int = 0, down: int = 0) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_up += up
            self.bytes_down += down
            self.by_method[method] = self.by_method.get(method, 0) + 1

    def reset(self) -> None:
        with self._lock:
            self.requests = self.bytes_up = self.bytes_down = 0
            self.by_method = {}

    def add_many(self, requests: int, up: int, down: int) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_up += up
            self.bytes_down += down

    def add_down(self, down: int) -> None:
        with self._lock:
            self.bytes_down += down

    def attach(self, events: Any) -> None:
        """Count every S3 request a boto3 client (or session) sends, via botocore events."""
        events.register("before-send.s3", self._before_send)
        events.register("after-call.s3", self._after_call)

    def _before_send(self, request: Any, **kwargs: Any) -> None:
        body = request.body
        size = len(body) if isinstance(body, bytes | bytearray) else 0
        if size == 0 and body is not None and hasattr(body, "seek") and hasattr(body, "tell"):
            pos = body.tell()
            body.seek(0, 2)
            size = body.tell() - pos
            body.seek(pos)
        self.add(str(request.method), up=size)

    def _after_call(self, http_response: Any = None, **kwargs: Any) -> None:
        if http_response is None:
            return
        length = http_response.headers.get("content-length")
        if length and str(length).isdigit():
            self.add_down(int(length))


@contextmanager
def measured(ops: int, counter: Any) -> Iterator[list[Measure]]:
    """Time a block; yields a list that holds the Measure when the block ends.

    ``counter`` is a :class:`Counter` or an s3store ``StoreStats`` (read after the block).
    """
    out: list[Measure] = []
    with Clock() as clock:
        yield out
    out.append(
        Measure(
            wall=clock.wall,
            cpu=clock.cpu,
            ops=ops,
            requests=int(
                counter.total_requests if hasattr(counter, "total_requests") else counter.requests
            ),
            bytes_up=int(counter.bytes_up),
            bytes_down=int(counter.bytes_down),
        )
    )


# -- formatting -------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def med_range(row: Row, name: str, scale: float = 1.0) -> str:
    if not row.runs:
        return "-"
    lo, hi = row.spread(name)
    mid = row.median(name)
    if len(row.runs) == 1 or lo == hi:
        return fmt(mid * scale)
    return f"{fmt(mid * scale)} ({fmt(lo * scale)}–{fmt(hi * scale)})"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def standard_table(rows: list[Row], by_variant: dict[tuple[str, str, int | None], Row]) -> str:
    """The per-row table: wall, ops/s, requests and bytes per op, CPU, ratio to the floor."""
    headers = [
        "server",
        "variant",
        "conc",
        "wall s",
        "ops/s",
        "req/op",
        "KiB up/op",
        "KiB down/op",
        "CPU s",
        "CPU ms/op",
        "× floor",
    ]
    body: list[list[str]] = []
    for row in rows:
        if row.error is not None and not row.runs:
            body.append(
                [row.server, row.variant, str(row.concurrency or "-"), f"n/a: {row.error}"]
                + ["-"] * 7
            )
            continue
        ops = row.runs[0].ops if row.runs else 1
        ratio = "-"
        floor = by_variant.get((row.server, row.floor, row.concurrency)) if row.floor else None
        if floor is not None and floor.runs:
            ratio = f"{row.median('ops_per_s') / floor.median('ops_per_s'):.2f}"
        elif row.floor is None and "floor" in row.variant:
            ratio = "1.00"
        body.append(
            [
                row.server,
                row.variant + (f" ({row.note})" if row.note else ""),
                str(row.concurrency or "-"),
                med_range(row, "wall"),
                med_range(row, "ops_per_s"),
                fmt(row.median("requests") / ops),
                fmt(row.median("bytes_up") / ops / 1024),
                fmt(row.median("bytes_down") / ops / 1024),
                med_range(row, "cpu"),
                fmt(row.median("cpu") / ops * 1000),
                ratio,
            ]
        )
    return table(headers, body)
