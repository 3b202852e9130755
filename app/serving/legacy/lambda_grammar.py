"""Turn a Lambda's instructions into an expression tree, or refuse naming the opcode or the name.

The grammar: the first parameter (the layer's input), numeric and other constants, the other
parameters bound from the layer's `arguments` (or their stored defaults), `+ - * / ** //` and unary
minus/plus, subscripts with constant indices and slices, lists and tuples, and calls of the
whitelisted names of `lambda_functions` with constant non-tensor arguments. No jumps, loops,
stores, imports, attribute reads on tensors or names off the whitelist. The tree is JSON:
`["input"]`, `["const", v]`, `["binary", op, a, b]`, `["unary", op, a]`, `["slice", a, b, c]`,
`["list", [..]]`, `["tuple", [..]]`, `["subscript", base, index]`, `["call", op, name, {param: node}]`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.serving.legacy.lambda_bytecode import CodeView, Instruction, UntranslatableLambda
from app.serving.legacy.lambda_functions import CONSTANTS, MODULES, bind, canonical, is_constant

Node = list[Any]
BINARY = {"BINARY_ADD": "+", "BINARY_SUBTRACT": "-", "BINARY_MULTIPLY": "*", "BINARY_TRUE_DIVIDE": "/",
          "BINARY_DIVIDE": "/", "BINARY_FLOOR_DIVIDE": "//", "BINARY_POWER": "**"}
BINARY_OP = {0: "+", 10: "-", 5: "*", 11: "/", 2: "//", 8: "**"}  # Python 3.11+: BINARY_OP's argument
UNARY = {"UNARY_NEGATIVE": "-", "UNARY_POSITIVE": "+"}
NUMBERS = (int, float)


@dataclass(frozen=True)
class _Path:
    """A dotted name being read (`tf`, `tf.image`, `tf.image.resize`), not yet a value."""

    dotted: str


class _Null:
    """The NULL CPython 3.7+ pushes below a callable."""


NULL = _Null()


def constant(value: Any, where: str) -> Node:
    """A constant node for a Python value of the grammar (numbers, bools, None, strings, tuples of them)."""
    if value is Ellipsis:
        return ["ellipsis"]
    if isinstance(value, bytes):  # Python 2 strings
        value = value.decode("ascii", "replace")
    if value is None or isinstance(value, (bool, str, *NUMBERS)):
        return ["const", value]
    if isinstance(value, (tuple, list)):
        return ["tuple", [constant(item, where) for item in value]]
    raise UntranslatableLambda(f"{where} holds a constant of type {type(value).__name__}")


class Translator:
    """A symbolic run of one code object over the grammar's values."""

    def __init__(self, view: CodeView, bound: dict[str, Node]):
        self.view, self.bound, self.stack = view, bound, []
        self.kw_names: tuple[str, ...] = ()
        self.steps = 0  # instructions read: how far the reading got (the most plausible version got furthest)

    def run(self) -> Node:
        """The expression tree the code returns."""
        if self.view.problem:
            raise UntranslatableLambda(self.view.problem)
        for instruction in self.view.instructions:
            if instruction.opname == "RETURN_VALUE":
                result = self.pop()
                if not isinstance(result, list) or is_constant(result):
                    raise UntranslatableLambda("the Lambda does not return a tensor computed from its input")
                return result
            self.step(instruction)
            self.steps += 1
        raise UntranslatableLambda("the code does not end with RETURN_VALUE")

    def pop(self) -> Any:
        """The top of the stack (an unbalanced stack means a reading of the wrong version)."""
        if not self.stack:
            raise UntranslatableLambda("the bytecode pops an empty stack")
        return self.stack.pop()

    def pops(self, count: int) -> list[Any]:
        """The top `count` values, deepest first."""
        return list(reversed([self.pop() for _ in range(count)]))

    def value(self, item: Any) -> Node:
        """A stack item as a node: dotted names must be whitelisted constants here."""
        if isinstance(item, _Path):
            if item.dotted in CONSTANTS:
                return constant(CONSTANTS[item.dotted], item.dotted)
            raise UntranslatableLambda(f"name {item.dotted!r} is not on the whitelist")
        if item is NULL:
            raise UntranslatableLambda("the bytecode uses a NULL as a value")
        return item

    def step(self, ins: Instruction) -> None:  # noqa: C901 - one branch per opcode of the grammar
        """Apply one instruction to the stack."""
        op, version = ins.opname, self.view.version
        if op in ("LOAD_FAST", "LOAD_FAST_CHECK"):
            self.stack.append(self.parameter(str(ins.argval)))
        elif op == "LOAD_CONST":
            self.stack.append(constant(ins.argval, "LOAD_CONST"))
        elif op in ("LOAD_GLOBAL", "LOAD_NAME"):
            if version >= (3, 11) and op == "LOAD_GLOBAL" and (ins.arg or 0) & 1:
                self.stack.append(NULL)
            self.stack.append(self.global_name(str(ins.argval)))
        elif op in ("LOAD_ATTR", "LOAD_METHOD"):
            base = self.pop()
            if not isinstance(base, _Path):
                raise UntranslatableLambda(f"{op} {ins.argval!r} reads an attribute of a value, not of a module")
            if op == "LOAD_METHOD" or (version >= (3, 12) and (ins.arg or 0) & 1):
                self.stack.append(NULL)
            self.stack.append(_Path(f"{base.dotted}.{ins.argval}"))
        elif op == "PUSH_NULL":
            self.stack.append(NULL)
        elif op in BINARY or (op == "BINARY_OP" and ins.arg in BINARY_OP):
            right, left = self.value(self.pop()), self.value(self.pop())
            if op == "BINARY_DIVIDE" and all(n[0] == "const" and type(n[1]) is int for n in (left, right)):
                raise UntranslatableLambda("Python 2 divides two integer constants (floor division)")
            self.stack.append(["binary", BINARY.get(op) or BINARY_OP[ins.arg], left, right])
        elif op in UNARY:
            self.stack.append(["unary", UNARY[op], self.value(self.pop())])
        elif op == "BUILD_SLICE":
            parts = [self.value(item) for item in self.pops(int(ins.arg))]
            self.stack.append(["slice", *self.constants(parts, "a slice"), *([["const", None]] * (3 - len(parts)))])
        elif op == "BINARY_SLICE":
            start, stop = self.constants([self.value(item) for item in self.pops(2)], "a slice")
            self.stack.append(["subscript", self.value(self.pop()), ["slice", start, stop, ["const", None]]])
        elif op == "BINARY_SUBSCR":
            index = self.constants([self.value(self.pop())], "a subscript")[0]
            self.stack.append(["subscript", self.value(self.pop()), index])
        elif op in ("BUILD_TUPLE", "BUILD_LIST"):
            kind = "tuple" if op == "BUILD_TUPLE" else "list"
            self.stack.append([kind, [self.value(item) for item in self.pops(int(ins.arg))]])
        elif op == "LIST_EXTEND" and int(ins.arg) == 1:
            extra, target = self.value(self.pop()), self.pop()
            if not (isinstance(target, list) and target[0] == "list" and extra[0] == "tuple"):
                raise UntranslatableLambda("LIST_EXTEND outside a list display")
            self.stack.append(["list", target[1] + extra[1]])
        elif op == "KW_NAMES":
            self.kw_names = tuple(ins.argval)
        elif op in ("CALL", "CALL_METHOD", "CALL_FUNCTION", "CALL_FUNCTION_KW"):
            self.call(op, int(ins.arg))
        else:
            raise UntranslatableLambda(f"opcode {op} is not recognised")

    def parameter(self, name: str) -> Node:
        """A parameter: the first is the input, the others come from `arguments` or their defaults."""
        if name not in self.view.parameters:
            raise UntranslatableLambda(f"local variable {name!r} is not a parameter")
        if name == self.view.parameters[0]:
            return ["input"]
        if name not in self.bound:
            raise UntranslatableLambda(f"parameter {name!r} has no value in the layer's arguments")
        return self.bound[name]

    def global_name(self, name: str) -> _Path:
        """A global name: a module of MODULES or a constant of CONSTANTS, nothing else."""
        if name not in MODULES and name not in CONSTANTS:
            raise UntranslatableLambda(f"name {name!r} is not on the whitelist")
        return _Path(name)

    def constants(self, nodes: list[Node], what: str) -> list[Node]:
        """`nodes`, each of which must be a constant."""
        for node in nodes:
            if not is_constant(node):
                raise UntranslatableLambda(f"{what} uses a value computed from the input")
        return nodes

    def call(self, op: str, arg: int) -> None:
        """A call of a whitelisted name, its keywords named as each Python version names them."""
        keywords: dict[str, Node] = {}
        if op == "CALL_FUNCTION" and self.view.version < (3, 6):  # low byte positional, high byte keyword pairs
            pairs = [(self.value(self.pop()), self.value(self.pop())) for _ in range(arg >> 8)]
            keywords.update((str(key[1]), value) for value, key in reversed(pairs))
            arg &= 0xFF
        names: tuple[str, ...] = ()
        if op == "CALL_FUNCTION_KW":
            names = tuple(item[1] for item in self.value(self.pop())[1])
        elif op == "CALL":
            names, self.kw_names = self.kw_names, ()
        values = [self.value(item) for item in self.pops(arg)]
        positional = values[:len(values) - len(names)]
        keywords.update(zip(names, values[len(positional):]))
        function = self.pop()
        if self.stack and self.stack[-1] is NULL:
            self.stack.pop()
        if not isinstance(function, _Path):
            raise UntranslatableLambda("the Lambda calls a value, not a whitelisted function")
        self.stack.append(bind(canonical(function.dotted), positional, keywords))
