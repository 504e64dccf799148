"""The few primitives that differ between the async and the sync world, written twice on purpose.

Everything else in ``s3store/_sync`` is generated from ``s3store/_async`` by
``scripts/unasync.py``, which renames each async primitive here to its sync twin
(``aopen_boto_client`` → ``open_boto_client``, ``agather_limited`` → ``gather_limited``, ...).
These are transport plumbing (how to open a client, run work concurrently, sleep, run a
background renewal), not store logic. The async twins are written in :mod:`s3store._aio`
and served from here on first use, so the sync store never imports asyncio.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack
from typing import TYPE_CHECKING, Any, TypeVar

from s3store.config import StoreSettings, client_kwargs

T = TypeVar("T")


# -- clients ---------------------------------------------------------------------------


async def aopen_boto_client(stack: AsyncExitStack, settings: StoreSettings) -> Any:
    """Build an aioboto3 S3 client from the AWS chain; closed when ``stack`` closes."""
    try:
        import aioboto3
    except ImportError as exc:
        from s3store.errors import ConfigurationError

        raise ConfigurationError(
            "the async store builds its client with aioboto3, which is not installed: "
            "pip install 's3store[async]' (or pass client= an aiobotocore S3 client)"
        ) from exc

    session = aioboto3.Session(profile_name=settings.profile_name)
    return await stack.enter_async_context(session.client("s3", **client_kwargs(settings)))


def open_boto_client(stack: ExitStack, settings: StoreSettings) -> Any:
    """Build a boto3 S3 client from the AWS chain; closed when ``stack`` closes."""
    import boto3

    session = boto3.Session(profile_name=settings.profile_name)
    client = session.client("s3", **client_kwargs(settings))
    stack.callback(client.close)
    return client


# -- bounded concurrency ---------------------------------------------------------------


def gather_limited(tasks: Sequence[Callable[[], T]], limit: int) -> list[T]:
    """Run ``tasks`` on at most ``limit`` threads; results in order; first failure raised."""
    if not tasks:
        return []
    if len(tasks) == 1:
        return [tasks[0]()]
    with ThreadPoolExecutor(max_workers=min(limit, len(tasks))) as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


# -- time ------------------------------------------------------------------------------


def clock() -> float:
    """Monotonic seconds."""
    return time.monotonic()


def sleep(seconds: float) -> None:
    """Sleep the calling thread."""
    time.sleep(seconds)


# -- background renewal ----------------------------------------------------------------


class Periodic:
    """Calls ``fn`` every ``interval`` seconds on a daemon thread until stopped.

    The sync twin of :class:`AsyncPeriodic`: failures are retried on the next tick, and
    only ``fatal`` errors or ``give_up_after`` seconds without a success stop the loop.
    """

    def __init__(
        self,
        fn: Callable[[], object],
        interval: float,
        *,
        fatal: tuple[type[BaseException], ...] = (),
        give_up_after: float | None = None,
    ) -> None:
        self.error: BaseException | None = None
        self.last_error: BaseException | None = None
        self.failures = 0
        self._fn = fn
        self._interval = interval
        self._fatal = fatal
        self._give_up_after = give_up_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start calling."""
        self._thread = threading.Thread(target=self._run, name="s3store-renew", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_success = time.monotonic()
        while not self._stop.wait(self._interval):
            try:
                self._fn()
            except self._fatal as exc:
                self.error = exc
                return
            except Exception as exc:
                self.last_error = exc
                self.failures += 1
                limit = self._give_up_after
                if limit is not None and time.monotonic() - last_success >= limit:
                    self.error = exc
                    return
            else:
                last_success = time.monotonic()

    @property
    def stopped(self) -> bool:
        """Whether the loop has ended (stopped, or given up: see :attr:`error`)."""
        return self._thread is None or not self._thread.is_alive()

    def stop(self) -> None:
        """Stop calling and wait for a call in flight to finish (never interrupted)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()


Lock = threading.Lock
Semaphore = threading.Semaphore

# The async twins live in s3store._aio: asyncio costs about 20 ms of import time, which a
# sync-only process (a Lambda handler, the CLI) should not pay. They load on first use.
_ASYNC_NAMES = frozenset(
    {"agather_limited", "aclock", "asleep", "AsyncPeriodic", "AsyncLock", "AsyncSemaphore"}
)

if TYPE_CHECKING:
    from s3store._aio import AsyncLock as AsyncLock
    from s3store._aio import AsyncPeriodic as AsyncPeriodic
    from s3store._aio import AsyncSemaphore as AsyncSemaphore
    from s3store._aio import aclock as aclock
    from s3store._aio import agather_limited as agather_limited
    from s3store._aio import asleep as asleep
else:

    def __getattr__(name: str) -> Any:
        if name in _ASYNC_NAMES:
            from s3store import _aio

            return getattr(_aio, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
