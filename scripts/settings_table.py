"""Print the README's settings table from app/config.py (paste it under "## Settings")."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import SETTINGS  # noqa: E402


def cell(key: str, default: object) -> str:
    if key == "MODEL_DIR":
        return "`models/` of this repo"
    if default is None:
        return "(none)"
    if key == "MAX_CONTENT_LENGTH":
        return f"`{default}` (32 MiB)"
    return f"`{str(default).lower() if isinstance(default, bool) else default}`"


for setting in SETTINGS:
    print(f"| `{setting.env_var}` | {cell(setting.key, setting.default)} | {setting.doc} |")
