"""A fault-injecting HTTP proxy for S3 tests (stdlib only: ``http.server`` + ``http.client``).

Put it between a store and a real S3 server (moto server, SeaweedFS)::

    with FaultProxy(endpoint, rate=0.10, seed=7) as proxy:
        store = AsyncS3SessionStore(bucket=..., endpoint_url=proxy.url, read_timeout=1)

Every request is forwarded byte for byte (the client's ``Host`` header and signature are kept,
so SigV4-checking servers accept it) unless the proxy decides to inject a fault:

==============  ===========================================================================
kind            what the client sees
==============  ===========================================================================
error500        500 InternalError (S3 XML body); the request never reaches the server
slowdown503     503 SlowDown (S3 XML body); the request never reaches the server
conflict409     409 ConditionalRequestConflict; only on conditional PUTs (If-None-Match /
                If-Match); the request never reaches the server
reset_before    the connection is reset (RST) without an answer; nothing was forwarded
reset_after     the request IS applied by the server, then the connection is reset: the
                client never sees the answer to a write that happened
timeout         the request is applied, the answer is held until the client gives up
                (its read timeout) and closes the connection
slow            the request is applied and answered, after a delay below the read timeout
==============  ===========================================================================

Decisions are random at ``rate`` but reproducible: each is drawn from a generator seeded
with ``seed`` and the request's identity (method, path without ``identity_strip``, query,
body hash, and how many times that identity was seen), so concurrent workloads get the same
faults whatever the thread interleaving. :meth:`FaultProxy.script` queues faults for the
next requests matching a predicate, for deterministic scenarios.

Every exchange is recorded (:attr:`FaultProxy.exchanges`): headers, body hash, the fault, and
the server's status when the request was forwarded, so tests can inspect what reached the
server (which writes were applied, which headers every request carried).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.conftest import BUCKET, Backend, _ensure_bucket

FAULT_KINDS: tuple[str, ...] = (
    "error500",
    "slowdown503",
    "conflict409",
    "reset_before",
    "reset_after",
    "timeout",
    "slow",
)
"""Every kind of fault the proxy can inject."""

LANDED_KINDS = frozenset({"reset_after", "timeout"})
"""Faults after which the server has applied the request but the client saw no answer."""

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "content-length",
    }
)
_ERRORS: dict[str, tuple[int, str, str]] = {
    "error500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "slowdown503": (503, "SlowDown", "Please reduce your request rate."),
    "conflict409": (
        409,
        "ConditionalRequestConflict",
        "A conflicting conditional operation is currently in progress against this resource.",
    ),
}


@dataclass(frozen=True)
class Request:
    """What the proxy knows about a request when it decides on a fault."""

    method: str
    key: str | None
    """The object key (path-style addressing, bucket stripped), or None for bucket requests."""
    query: str
    headers: dict[str, str]
    """Request headers, names lowercased."""
    body_md5: str

    @property
    def conditional_put(self) -> bool:
        """A PUT carrying If-None-Match or If-Match."""
        return self.method == "PUT" and (
            "if-none-match" in self.headers or "if-match" in self.headers
        )

    @property
    def object_put(self) -> bool:
        """A PutObject (not an UploadPart)."""
        return self.method == "PUT" and self.key is not None and "uploadId" not in self.query


@dataclass(frozen=True)
class Exchange:
    """One request as the proxy handled it."""

    request: Request
    fault: str | None
    upstream_status: int | None
    """The server's status, when the request was forwarded (None: never reached it)."""
    occurrence: int


@dataclass
class _Scripted:
    kind: str
    match: Callable[[Request], bool]


@dataclass
class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 in front of ``upstream`` that injects faults.

    Args:
        upstream: the real server, ``http://host:port``.
        rate: probability that a request gets a random fault (0: only scripted faults).
        seed: seed of the fault decisions.
        kinds: the fault kinds drawn at random.
        weights: relative weight per kind (default 1; ``conflict409`` only counts for
            conditional PUTs).
        eligible: only requests for which this returns True get random faults.
        kind_eligible: ``(kind, request) -> bool``: which kinds may be drawn for a request.
        conflict_on_retries: whether a 409 may be drawn for a repeated identical request (an
            SDK retry); see tests/test_faults.py for why the default workload turns it off.
        identity_strip: removed from paths before hashing (the random per-test prefix).
        slow_delay: bounds of the delay of a ``slow`` answer, seconds.
        hold_cap: the longest a ``timeout`` fault holds an answer if the client never gives up.
    """

    upstream: str
    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS
    weights: dict[str, float] = field(default_factory=dict)
    eligible: Callable[[Request], bool] = field(default=lambda _request: True)
    kind_eligible: Callable[[str, Request], bool] = field(default=lambda _kind, _request: True)
    conflict_on_retries: bool = True
    identity_strip: str = ""
    slow_delay: tuple[float, float] = (0.05, 0.25)
    hold_cap: float = 15.0
    counts: Counter[str] = field(default_factory=Counter, init=False)
    exchanges: list[Exchange] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        parsed = urlsplit(self.upstream)
        self._upstream_host = parsed.hostname or "127.0.0.1"
        self._upstream_port = parsed.port or 80
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._script: list[_Scripted] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The proxy's endpoint URL."""
        if self._server is None:
            raise RuntimeError("proxy not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        """Listen on a free port of 127.0.0.1 and serve on a background thread."""
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release held answers, close the socket, join the thread."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- control -------------------------------------------------------------------------

    def script(self, kind: str, match: Callable[[Request], bool] = lambda _request: True) -> None:
        """Inject ``kind`` into the next request that satisfies ``match`` (queued in order)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._script.append(_Scripted(kind, match))

    @property
    def pending_script(self) -> int:
        """Scripted faults not injected yet."""
        with self._lock:
            return len(self._script)

    def clear_script(self) -> None:
        """Drop the scripted faults not injected yet."""
        with self._lock:
            self._script.clear()

    def set_rate(self, rate: float) -> None:
        """Change the random fault rate (0 turns random faults off)."""
        with self._lock:
            self.rate = rate

    # -- decisions -----------------------------------------------------------------------

    def _decide(self, request: Request, path: str) -> tuple[str | None, float, int]:
        identity = "|".join(
            [
                request.method,
                path.replace(self.identity_strip, "", 1) if self.identity_strip else path,
                request.query,
                request.body_md5,
            ]
        )
        with self._lock:
            self._seen[identity] += 1
            occurrence = self._seen[identity]
            for index, entry in enumerate(self._script):
                if entry.match(request):
                    del self._script[index]
                    self.counts[entry.kind] += 1
                    return entry.kind, self.slow_delay[0], occurrence
            rate = self.rate
        digest = hashlib.sha256(f"{self.seed}|{identity}|{occurrence}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        delay = rng.uniform(*self.slow_delay)
        if rate <= 0 or rng.random() >= rate or not self.eligible(request):
            return None, delay, occurrence
        choices = [
            k
            for k in self.kinds
            if self.kind_eligible(k, request)
            and (
                k != "conflict409"
                or (request.conditional_put and (self.conflict_on_retries or occurrence == 1))
            )
        ]
        if not choices:
            return None, delay, occurrence
        kind = rng.choices(choices, weights=[self.weights.get(k, 1.0) for k in choices])[0]
        with self._lock:
            self.counts[kind] += 1
        return kind, delay, occurrence

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    # -- views over the record ---------------------------------------------------------

    def applied_puts(self) -> list[Exchange]:
        """PutObject requests the server answered 200, in the order it answered them."""
        with self._lock:
            return [
                e
                for e in self.exchanges
                if e.request.object_put
                and e.upstream_status is not None
                and e.upstream_status < 300
            ]

    def landed_unanswered(self) -> list[Exchange]:
        """Requests the server applied (2xx) whose answer the client never received."""
        with self._lock:
            return [
                e
                for e in self.exchanges
                if e.fault in LANDED_KINDS
                and e.upstream_status is not None
                and e.upstream_status < 300
            ]


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request access log."""

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.owner
        body = self._read_body()
        split = urlsplit(self.path)
        path = unquote(split.path)
        bucket, _, key = path.lstrip("/").partition("/")
        request = Request(
            method=self.command,
            key=key or None,
            query=split.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body_md5=hashlib.md5(body, usedforsecurity=False).hexdigest(),
        )
        kind, delay, occurrence = proxy._decide(request, path)
        if kind in _ERRORS:
            self._answer_error(kind, key or bucket)
            proxy._record(Exchange(request, kind, None, occurrence))
            return
        if kind == "reset_before":
            self._reset()
            proxy._record(Exchange(request, kind, None, occurrence))
            return
        try:
            status, reason, headers, data = self._forward(body)
        except OSError:
            self._reset()
            proxy._record(Exchange(request, "upstream-failed", None, occurrence))
            return
        proxy._record(Exchange(request, kind, status, occurrence))
        if kind == "reset_after":
            self._reset()
            return
        if kind == "timeout":
            self._hold_until_client_gives_up()
            self._reset()
            return
        if kind == "slow" and proxy._stopping.wait(delay):
            self._reset()
            return
        self._answer(status, reason, headers, data)

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        proxy = self.owner
        connection = http.client.HTTPConnection(
            proxy._upstream_host, proxy._upstream_port, timeout=60
        )
        try:
            connection.putrequest(
                self.command, self.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            connection.close()

    def _answer(
        self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes
    ) -> None:
        self.send_response_only(status, reason)
        length = str(len(data))
        for name, value in headers:
            lowered = name.lower()
            if lowered == "content-length" and self.command == "HEAD":
                length = value
            if lowered not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _answer_error(self, kind: str, resource: str) -> None:
        status, code, message = _ERRORS[kind]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<Resource>{resource}</Resource><RequestId>faultproxy</RequestId></Error>"
        ).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("x-amz-request-id", "faultproxy")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Close the client connection with a TCP RST and no answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _hold_until_client_gives_up(self) -> None:
        """Wait until the client closes the connection (its read timeout), the proxy stops,
        or ``hold_cap`` passes."""
        proxy = self.owner
        deadline = time.monotonic() + proxy.hold_cap
        while not proxy._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            readable, _, _ = select.select([self.connection], [], [], min(remaining, 0.05))
            if readable:
                # EOF (b"") means the client closed; anything else is a new request we will
                # not answer either.
                with contextlib.suppress(OSError):
                    self.connection.recv(1, socket.MSG_PEEK)
                return


# -- server backends for fault, crash and security tests ---------------------------------


def real_server_names() -> list[str]:
    """The selected backends that are real S3 servers (not the in-memory client)."""
    from tests.conftest import selected_backends

    return [name for name in selected_backends() if name != "memory"]


def open_server(request: pytest.FixtureRequest, name: str) -> Backend:
    """A :class:`Backend` for a real server (started once per session by conftest)."""
    import os

    if name in ("moto", "seaweedfs"):
        endpoint: str = request.getfixturevalue(f"{name}_endpoint")
    elif name == "localstack":
        endpoint = os.environ.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
    else:
        raise pytest.UsageError(f"unknown backend {name!r}")
    _ensure_bucket(endpoint)
    return Backend(name, endpoint=endpoint, atomic=name != "moto")


@contextlib.contextmanager
def proxied(backend: Backend, **options: Any) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy` in front of ``backend`` (stopped on exit)."""
    if backend.endpoint is None:
        raise ValueError("the in-memory backend has no endpoint to proxy")
    proxy = FaultProxy(backend.endpoint, **options)
    with proxy:
        yield proxy


__all__ = [
    "BUCKET",
    "FAULT_KINDS",
    "LANDED_KINDS",
    "Exchange",
    "FaultProxy",
    "Request",
    "open_server",
    "proxied",
    "real_server_names",
]
