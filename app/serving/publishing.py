"""Is a version published, or is its file still being copied into the model folder?

The rule, applied by `plan_models(..., stable=PublishingCheck())` on every scan of the watcher:
- At the first scan (server start) every file on disk counts as published.
- On a later scan a version counts as published only when its file (the model file; for a version
  folder without exactly one model file, the folder itself) had the same size and mtime (ns) at the
  previous scan. A file seen for the first time, or whose size or mtime changed since the previous
  scan, is "still being copied": the version is left out of the plan (not loaded, not listed), logged
  once at info, until two consecutive scans agree.
A file that once counted as published keeps counting while it exists, with the stamp it had when it last
settled: overwriting a served file in place (or a copy that paused longer than a poll and then went on)
does not unload the version while the file changes; once two scans agree on the new stamp, the version's
source has changed (`ModelSource.file_stamp`) and the manager loads it afresh and swaps it in.
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
        self._published: dict[Path, Stamp] = {}  # counted as published once: stays so (with its stamp) while it exists
        self._lock = threading.Lock()

    def published(self, paths: Iterable[Path]) -> dict[Path, Stamp]:
        """The paths among those found on this scan that count as published, with the stamp each had when it
        last settled; remembers their stats."""
        stamps = {path: stamp for path in paths if (stamp := _stamp(path)) is not None}
        with self._lock:
            previous, self._stamps = self._stamps, stamps
            if previous is None:
                self._published = dict(stamps)
                return dict(stamps)
            settled = {path: stamp for path, stamp in stamps.items() if previous.get(path) == stamp}
            ready = {**{path: stamp for path, stamp in self._published.items() if path in stamps}, **settled}
            for path in sorted(set(stamps) - set(ready) - self._held):
                why = "is new" if path not in previous else "changed since the previous scan"
                log.info("not loading %s yet: it %s (still being copied?); waiting until two scans agree", path,
                         why, extra={"path": str(path)})
            self._held = set(stamps) - set(ready)
            self._published = ready
            return ready


def stamp_of(path: Path) -> Stamp | None:
    """(size, mtime_ns) of `path`, None when it cannot be read."""
    return _stamp(path)


def _stamp(path: Path) -> Stamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns
