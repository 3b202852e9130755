"""Is a version published, or is its file still being copied into the model folder?

The rule, applied by `plan_models(..., stable=PublishingCheck())` on every scan of the watcher:
- At the first scan (server start) every file on disk counts as published.
- On a later scan a version counts as published only when its file (the model file; for a version
  folder without exactly one model file, the folder itself) had the same size and mtime (ns) at the
  previous scan. A file seen for the first time, or whose size or mtime changed since the previous
  scan, is "still being copied": the version is left out of the plan (not loaded, not listed), logged
  once at info, until two consecutive scans agree.
So a version published safely (written elsewhere, then its folder renamed into place) is loaded on the
scan after the one that first sees it, and one copied in place is loaded only once its copy has stopped
for a whole poll interval; a half-copied file is never loaded.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)
Stamp = tuple[int, int]  # (st_size, st_mtime_ns)


class PublishingCheck:
    """Remembers each model file's (size, mtime_ns) between scans, to tell published files from copies."""

    def __init__(self) -> None:
        self._stamps: dict[Path, Stamp] | None = None  # None: no scan yet
        self._held: set[Path] = set()  # left out and logged, until published
        self._lock = threading.Lock()

    def published(self, paths: Iterable[Path]) -> set[Path]:
        """The paths among those found on this scan that count as published; remembers their stats."""
        stamps = {path: stamp for path in paths if (stamp := _stamp(path)) is not None}
        with self._lock:
            previous, self._stamps = self._stamps, stamps
            if previous is None:
                return set(stamps)
            ready = {path for path, stamp in stamps.items() if previous.get(path) == stamp}
            for path in sorted(set(stamps) - ready - self._held):
                why = "is new" if path not in previous else "changed since the previous scan"
                log.info("not loading %s yet: it %s (still being copied?); waiting until two scans agree", path,
                         why, extra={"path": str(path)})
            self._held = set(stamps) - ready
            return ready


def _stamp(path: Path) -> Stamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns
