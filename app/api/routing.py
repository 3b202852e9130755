"""URL converters: `<int:version>` holds 64 bits, so a longer number is no route (404), never a 500."""
from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

MAX_VERSION = 2**63 - 1  # what orjson, TF Serving's int64 and the V2 protocol's versions hold


class VersionConverter(IntegerConverter):
    """Werkzeug's `int` converter, bounded to 0..2**63-1."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_VERSION)
        super().__init__(map, *args, **kwargs)
