"""The few primitives that differ between the async and the sync world, written twice on purpose.

Everything else in ``s3store/_sync`` is generated from ``s3store/_async`` by
``scripts/unasync.py``, which renames each async primitive here to its sync twin
(``aopen_boto_client`` → ``open_boto_client``, ``agather_limited`` → ``gather_limited``, ...).
These are transport plumbing (how to open a client, run work concurrently, sleep, run a
background renewal), not store logic.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack
from typing import Any, TypeVar

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


async def agather_limited(tasks: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run ``tasks`` with at most ``limit`` in flight; results in order.

    The first failure cancels the rest and is raised (siblings do not keep writing).
    """
    if not tasks:
        return []
    if len(tasks) == 1:
        return [await tasks[0]()]
    semaphore = asyncio.Semaphore(limit)

    async def run(task: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await task()

    try:
        async with asyncio.TaskGroup() as group:
            futures = [group.create_task(run(task)) for task in tasks]
    except BaseExceptionGroup as group_error:
        # Callers promise one typed error, as the sync twin raises: the first failure, with
        # the whole group kept as its cause.
        raise _first_error(group_error) from group_error
    return [f.result() for f in futures]


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    from s3store.errors import StoreError

    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending[:0] = list(error.exceptions)
        else:
            leaves.append(error)
    typed = [e for e in leaves if isinstance(e, StoreError)]
    return (typed or leaves)[0]


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


def aclock() -> float:
    """Monotonic seconds on the running loop's clock (a simulation's virtual time in tests)."""
    return asyncio.get_running_loop().time()


def clock() -> float:
    """Monotonic seconds."""
    return time.monotonic()


async def asleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    """Sleep the calling thread."""
    time.sleep(seconds)


# -- background renewal ----------------------------------------------------------------


class AsyncPeriodic:
    """Calls ``fn`` every ``interval`` seconds on the running loop until stopped.

    A failing call does not stop the loop: the error is kept in :attr:`last_error` and the
    next tick tries again. The loop stops for good only when a call raises one of ``fatal``,
    or when calls have kept failing for ``give_up_after`` seconds since the last success
    (or the start); the error that stopped it is kept in :attr:`error` (the owner decides
    what a stopped renewal means). :meth:`stop` never interrupts a call in flight.
    """

    def __init__(
        self,
        fn: Callable[[], Awaitable[object]],
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
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Start calling."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_success = loop.time()
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self._interval)
                return  # stopped while waiting
            except TimeoutError:
                pass
            try:
                await self._fn()
            except self._fatal as exc:
                self.error = exc
                return
            except Exception as exc:
                self.last_error = exc
                self.failures += 1
                limit = self._give_up_after
                if limit is not None and loop.time() - last_success >= limit:
                    self.error = exc
                    return
            else:
                last_success = loop.time()

    @property
    def stopped(self) -> bool:
        """Whether the loop has ended (stopped, or given up: see :attr:`error`)."""
        return self._task is None or self._task.done()

    async def stop(self) -> None:
        """Stop calling; a call in flight is waited for, never cancelled mid-request."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            # Re-raise only if *we* are being cancelled; then stop the renewer too.
            if current is not None and current.cancelling():
                task.cancel()
                raise


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


AsyncLock = asyncio.Lock
Lock = threading.Lock
AsyncSemaphore = asyncio.Semaphore
Semaphore = threading.Semaphore
