"""Read a stored Lambda's code object, as any CPython from 2.7 to 3.12 marshalled it, without running it.

`xdis` unmarshals and disassembles code objects of other Python versions; nothing here executes,
evaluates or imports anything the file holds. A Keras file does not say which Python wrote its
bytecode, so every candidate version is tried and the grammar (`lambda_grammar`) decides.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import io
from dataclasses import dataclass
from typing import Any

from app.errors import UntranslatableConfig

# Every CPython a Keras 1.x / 2.x / tf.keras file can have been written with, newest last.
CANDIDATE_VERSIONS = ("2.7", "3.4", "3.5", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12")
SKIPPED_OPCODES = frozenset({"RESUME", "NOP", "CACHE", "PRECALL", "EXTENDED_ARG"})
CO_VARARGS, CO_VARKEYWORDS = 0x04, 0x08


class UntranslatableLambda(UntranslatableConfig):
    """A Lambda's stored code is outside the recognised grammar (the message names the opcode or name)."""


@dataclass(frozen=True)
class Instruction:
    """One bytecode instruction as xdis decodes it: its name, raw argument and resolved value."""

    opname: str
    arg: int | None
    argval: Any


@dataclass(frozen=True)
class CodeView:
    """A code object read as one Python version would have written it."""

    version: tuple[int, int]
    parameters: tuple[str, ...]
    instructions: tuple[Instruction, ...]
    problem: str | None = None  # a signature outside the grammar (a closure, *args)

    @property
    def plausible(self) -> bool:
        """Whether every opcode is one of this version's and the code ends by returning."""
        return bool(self.instructions) and self.instructions[-1].opname in ("RETURN_VALUE", "RETURN_CONST") \
            and not any(i.opname.startswith("<") for i in self.instructions)


def stored_bytes(function: Any) -> bytes | None:
    """The marshalled bytes of a stored Lambda `function` (Keras 1: raw_unicode_escape; 2.x: base64), or None."""
    if isinstance(function, dict):  # Keras 3: {"class_name": "__lambda__", "config": {"code": ...}}
        function = (function.get("config") or {}).get("code")
    elif isinstance(function, (list, tuple)):
        function = function[0] if function else None
    if not isinstance(function, str):
        return None
    try:
        return base64.b64decode(function.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        try:
            return function.encode("raw_unicode_escape")
        except UnicodeEncodeError:
            return None


def stored_defaults(function: Any) -> tuple[Any, ...]:
    """The stored default values of a Lambda's parameters (Keras 1/2 keep them beside the code)."""
    if isinstance(function, (list, tuple)) and len(function) > 1 and isinstance(function[1], (list, tuple)):
        return tuple(function[1])
    return ()


def has_closure(function: Any) -> bool:
    """Whether the stored function carries a closure (values captured from an enclosing function)."""
    return isinstance(function, (list, tuple)) and len(function) > 2 and function[2] is not None


def read_code(raw: bytes) -> list[CodeView]:
    """Every reading of `raw` as a code object of a CANDIDATE_VERSIONS Python that consumes all of it."""
    from xdis import magics
    from xdis.bytecode import Bytecode
    from xdis.op_imports import get_opcode_module
    from xdis.unmarshal import load_code

    views = []
    for version in CANDIDATE_VERSIONS:
        major, minor = (int(part) for part in version.split("."))
        stream = io.BytesIO(raw)
        try:
            # xdis writes what it cannot read to stderr: a wrong version's reading is expected to fail
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                code = load_code(stream, magics.magic2int(magics.by_version[version]))
                if stream.tell() != len(raw) or not hasattr(code, "co_code"):
                    continue
                opcodes = get_opcode_module((major, minor), "CPython")
                instructions = tuple(Instruction(i.opname, i.arg, i.argval) for i in Bytecode(code, opcodes)
                                     if i.opname not in SKIPPED_OPCODES)
        except Exception:  # noqa: BLE001 - not a code object of this version
            continue
        views.append(_view((major, minor), code, instructions))
    return views


def _view(version: tuple[int, int], code: Any, instructions: tuple[Instruction, ...]) -> CodeView:
    """A CodeView; signatures outside the grammar (closures, *args) carry their problem."""
    if getattr(code, "co_freevars", ()) or getattr(code, "co_cellvars", ()):
        return CodeView(version, (), instructions, "the Lambda creates or uses a closure (a comprehension or a "
                        "nested function)")
    if int(getattr(code, "co_flags", 0)) & (CO_VARARGS | CO_VARKEYWORDS):
        return CodeView(version, (), instructions, "the Lambda takes *args or **kwargs")
    count = int(code.co_argcount) + int(getattr(code, "co_kwonlyargcount", 0) or 0)
    parameters = tuple(str(name) for name in tuple(code.co_varnames)[:count])
    return CodeView(version, parameters, instructions)
