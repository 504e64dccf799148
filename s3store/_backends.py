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
    import aioboto3

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

    async with asyncio.TaskGroup() as group:
        futures = [group.create_task(run(task)) for task in tasks]
    return [f.result() for f in futures]


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


async def asleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    """Sleep the calling thread."""
    time.sleep(seconds)


# -- background renewal ----------------------------------------------------------------


class AsyncPeriodic:
    """Calls ``fn`` every ``interval`` seconds on the running loop until stopped.

    A failing call stops the loop and is kept in :attr:`error` (the owner decides what a
    failed renewal means).
    """

    def __init__(self, fn: Callable[[], Awaitable[object]], interval: float) -> None:
        self.error: BaseException | None = None
        self._fn = fn
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start calling."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._fn()
            except Exception as exc:
                self.error = exc
                return

    async def stop(self) -> None:
        """Stop calling and wait for an in-flight call to finish."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            # Re-raise only if *we* are being cancelled, not because we cancelled the renewer.
            if current is not None and current.cancelling():
                raise


class Periodic:
    """Calls ``fn`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, fn: Callable[[], object], interval: float) -> None:
        self.error: BaseException | None = None
        self._fn = fn
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start calling."""
        self._thread = threading.Thread(target=self._run, name="s3store-renew", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._fn()
            except Exception as exc:
                self.error = exc
                return

    def stop(self) -> None:
        """Stop calling and wait for an in-flight call to finish."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()


AsyncLock = asyncio.Lock
Lock = threading.Lock
