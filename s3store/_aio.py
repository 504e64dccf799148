"""The asyncio side of :mod:`s3store._backends` (the async primitives ``scripts/unasync.py``
renames to their sync twins there), in a module of its own so that importing the sync store
never imports asyncio. Import these names from :mod:`s3store._backends`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

AsyncLock = asyncio.Lock
AsyncSemaphore = asyncio.Semaphore


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


def aclock() -> float:
    """Monotonic seconds on the running loop's clock (a simulation's virtual time in tests)."""
    return asyncio.get_running_loop().time()


async def asleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


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
