"""The manager's loads: one at a time, in order, each on a short-lived thread so the lifecycle thread keeps
ticking (routes, drains) while a model loads.

Once the worker serves (`gentle`), a load runs beside live traffic: its thread takes a lower OS priority
(nice +10) and, while it runs, Python hands the GIL over every 0.5 ms instead of 5 ms, so the request
threads wait less behind the loader's Python work (`python -m bench.rollout` measures what is left).
A thread the loader starts inherits the lower priority; TensorFlow's and LiteRT's pools (one thread each by
default) exist from the first load, which is not gentle."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from app import errors
from app.serving.servable import Loader, ServableVersion
from app.serving.types import ModelState

log = logging.getLogger(__name__)
GENTLE_NICE = 10                # the loading thread's nice increment once the worker serves
GENTLE_SWITCH_INTERVAL = 0.0005  # seconds; Python's default is 0.005


class LoadQueue:
    """Servables waiting for the loader, and the one it is loading."""

    def __init__(self, loader: Loader, wake: Callable[[], None]):
        self._loader, self._wake = loader, wake
        self._waiting: deque[ServableVersion] = deque()
        self._current: tuple[ServableVersion, threading.Thread, float] | None = None
        self.gentle = False  # set once the worker serves: later loads yield to requests

    def __bool__(self) -> bool:
        return bool(self._waiting or self._current)

    @property
    def loading(self) -> ServableVersion | None:
        """The servable being loaded now."""
        return self._current[0] if self._current else None

    def add(self, servables: Iterable[ServableVersion]) -> None:
        """Queue `servables` (LOADING) behind the others."""
        self._waiting.extend(servables)

    def waiting(self) -> list[ServableVersion]:
        """The queued servables (not started)."""
        return list(self._waiting)

    def finished(self) -> tuple[ServableVersion, float] | None:
        """The servable whose load just ended and the seconds it took (once), else None."""
        if self._current is None or self._current[1].is_alive():
            return None
        servable, _, started = self._current
        self._current = None
        return servable, time.perf_counter() - started

    def start_next(self, wanted: Callable[[ServableVersion], bool]) -> None:
        """Start loading the next queued servable still LOADING and `wanted` (the others are dropped)."""
        while self._current is None and self._waiting:
            servable = self._waiting.popleft()
            if servable.state is ModelState.LOADING and wanted(servable):
                thread = threading.Thread(target=self._load, args=(servable,), name="model-load", daemon=True)
                self._current = (servable, thread, time.perf_counter())
                thread.start()

    def _load(self, servable: ServableVersion) -> None:
        """(The loading thread.) Give `servable` to the loader; it ends AVAILABLE or FAILED."""
        try:
            with gentle_thread() if self.gentle else contextlib.nullcontext():
                self._loader(servable)
        except Exception as exc:  # noqa: BLE001 - a loader bug must not leave the version LOADING
            log.exception("loader failed on model %s version %s", servable.name, servable.version)
            servable.state, servable.error = ModelState.FAILED, errors.reason_for(exc)
        finally:
            servable.settled.set()
            self._wake()


@contextlib.contextmanager
def gentle_thread():  # type: ignore[no-untyped-def]
    """Run the calling thread at a lower OS priority with a short GIL switch interval (restored after)."""
    interval, thread = sys.getswitchinterval(), threading.get_native_id()
    nice = os.getpriority(os.PRIO_PROCESS, thread)
    with contextlib.suppress(OSError):  # Linux: a thread's nice is set by its native id
        os.setpriority(os.PRIO_PROCESS, thread, nice + GENTLE_NICE)
    sys.setswitchinterval(min(interval, GENTLE_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        with contextlib.suppress(OSError):  # lowering it back needs CAP_SYS_NICE: the thread ends anyway
            os.setpriority(os.PRIO_PROCESS, thread, nice)
