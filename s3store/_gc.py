"""Pausing the cyclic garbage collector around bursts of allocation that hold no garbage.

A burst that creates thousands of container objects (parsing a large document, defining a
hundred pydantic model classes) sets off young-generation collections that find nothing to
free and promote everything, and the full collections that follow walk every live object of
the process. Pausing defers that to one later pass. Measured: ``bench/codec.py`` and
``bench/transport.py`` (large loads and saves), ``bench/cold_start.py`` (imports).

The pause is process-wide, so it is short and only undone by whoever started it: nested
pauses (or a collector the application turned off) stay as they were. Threads racing here
can at worst re-enable the collector early, which costs speed, not correctness.
"""

from __future__ import annotations

import gc
from types import TracebackType


class GcPaused:
    """``with GcPaused():`` disables the collector inside, if it is on and ``when`` holds."""

    __slots__ = ("_paused",)

    def __init__(self, when: bool = True) -> None:
        self._paused = when and gc.isenabled()

    def __enter__(self) -> None:
        if self._paused:
            gc.disable()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._paused:
            gc.enable()
