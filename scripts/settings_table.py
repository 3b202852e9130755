"""The settings table of docs/operations.md, generated from the declarations in app/settings.py.

    python scripts/settings_table.py          # print the table
    python scripts/settings_table.py --write  # rewrite the table's block in docs/operations.md
    python scripts/settings_table.py --check  # exit 1 when that block is not current
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.settings import REPO_ROOT, GunicornSettings, Settings, env_var  # noqa: E402

DOC = REPO_ROOT / "docs" / "operations.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
MIB = 1024 * 1024


def default_cell(default: object) -> str:
    """A default as the table shows it: paths relative to the repo, booleans lower-case, sizes in MiB too."""
    if default is None:
        return "(none)"
    if isinstance(default, Path) and default.is_relative_to(REPO_ROOT):
        return f"`{default.relative_to(REPO_ROOT)}/` of this repo"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, int) and default >= MIB and default % MIB == 0:
        return f"`{default}` ({default // MIB} MiB)"
    return f"`{default}`"


def table() -> str:
    """The Markdown table: one row per setting of the server, then gunicorn's."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for cls in (Settings, GunicornSettings):
        for name, field in cls.model_fields.items():
            rows.append(f"| `{env_var(cls, name)}` | {default_cell(field.default)} | {field.description} |")
    return "\n".join(rows)


def block() -> str:
    """The table between its two markers."""
    return f"{START}\n{table()}\n{END}"


def with_current_block(text: str) -> str:
    """`text` with its settings-table block replaced by the current one."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{DOC}: no {START} ... {END} block; add the two markers where the table goes")
    return text[:start] + block() + text[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    """Print, write or check the table; 1 when --check finds the block out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"rewrite the block in {DOC.relative_to(REPO_ROOT)}")
    mode.add_argument("--check", action="store_true", help="exit 1 when the block is not current")
    args = parser.parse_args(argv)
    if args.write:
        text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"# Operations\n\n{START}\n{END}\n"
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(with_current_block(text), encoding="utf-8")
    elif args.check:
        text = DOC.read_text(encoding="utf-8")
        if with_current_block(text) != text:
            print(f"{DOC.relative_to(REPO_ROOT)}: the settings table is out of date; "
                  "run `.venv/bin/python scripts/settings_table.py --write`", file=sys.stderr)
            return 1
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
