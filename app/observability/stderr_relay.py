"""JSON mode: the workers' raw stderr lines (TensorFlow's and TFLite's C++ messages, a crash's
traceback) carried to stdout as JSON objects by the gunicorn master.

The C++ runtime writes to file descriptor 2 whatever Python's logging says (absl's "All log
messages before absl::InitializeLog()", oneDNN's notice, TFLite's "Created ... delegate"). Before
the first fork the master opens a pipe and a thread that reads it (`start`); each worker points its
descriptor 2 at the pipe (`attach`). A line that is a JSON object already (Python's log records)
passes as it is; any other becomes one object with logger `stderr`, a level read from its prefix
and `pid` null (the pipe does not say which worker wrote it). The master's own stderr is untouched.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO

from app.logs import json_formatter

LEVELS = (("F", logging.CRITICAL), ("E", logging.ERROR), ("W", logging.WARNING), ("I", logging.INFO))
_pipe: list[int] = []  # [read end, write end] once started


def start() -> None:
    """(Master, before a fork; idempotent.) Open the pipe and the thread relaying it to stdout."""
    if _pipe:
        return
    read_end, write_end = os.pipe()
    _pipe.extend((read_end, write_end))
    threading.Thread(target=relay, args=(os.fdopen(read_end, "rb", buffering=0), sys.stdout), name="stderr-relay",
                     daemon=True).start()


def attach() -> None:
    """(Worker, after the fork.) Send this process's descriptor 2 into the relay's pipe."""
    if _pipe:
        os.dup2(_pipe[1], 2)


def level_of(line: str) -> int:
    """The level a raw line states: absl's `I0000 ...`/`W...`, `INFO:`/`WARNING:`; else WARNING."""
    head = line[:1]
    for prefix, level in LEVELS:
        if head == prefix and (line[1:2].isdigit() or line[1:].upper().startswith(logging.getLevelName(level)[1:])):
            return level
    return logging.WARNING


def as_json(line: str, formatter: logging.Formatter) -> str:
    """`line` as one JSON object: itself when it is one already."""
    if line.startswith("{") and line.endswith("}"):
        return line
    record = logging.LogRecord("stderr", level_of(line), __file__, 0, line, None, None)
    record.process = None
    return formatter.format(record)


def relay(source: IO[bytes], target: IO[str]) -> None:
    """Copy `source` to `target` line by line, each as one JSON object, until the pipe closes."""
    formatter = json_formatter()
    for raw in source:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.strip():
            target.write(as_json(line, formatter) + "\n")
            target.flush()
