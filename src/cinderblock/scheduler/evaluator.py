"""A small, safe evaluator for driver filter and goodness functions.

Operators write expressions such as ``volume.size < 100 and capabilities.multiattach``
or ``stats.free_capacity_gb > 500 ? 100 : 50``. They are tokenised and parsed by hand
into a tree of tuples, then evaluated against plain mappings; nothing ever reaches
Python's own ``eval``/``compile``, and names are dictionary keys, never attributes.

Grammar, lowest precedence first::

    ternary    := or_expr ['?' ternary ':' ternary]
    or_expr    := and_expr {('or' | '||') and_expr}
    and_expr   := not_expr {('and' | '&&') not_expr}
    not_expr   := ('not' | '!') not_expr | comparison
    comparison := additive {('<' | '>' | '<=' | '>=' | '==' | '!=' | '<>') additive}
    additive   := term {('+' | '-') term}
    term       := unary {('*' | '/' | '%') unary}
    unary      := ('+' | '-') unary | power
    power      := atom ['^' unary]
    atom       := number | string | true | false | name | func '(' args ')' | '(' ternary ')'

Names are dotted: the first part picks a namespace (``volume``, ``capabilities``,
``stats``, ``qos``, ``extra``), the rest are keys looked up in it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

MAX_LENGTH = 1000
# Nesting of parentheses, function arguments, ternaries and unary operators, counted
# while parsing. Each level costs the parser about 15 Python frames, so 32 levels stay
# well inside the interpreter's recursion limit.
MAX_DEPTH = 32

Node = tuple[Any, ...]


class EvaluatorError(ValueError):
    """Any problem with an expression: syntax, unknown name, arithmetic."""


class ExpressionSyntaxError(EvaluatorError):
    pass


class UnknownVariable(EvaluatorError):
    pass


class EvaluationError(EvaluatorError):
    pass


# --- tokens ------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<string>'[^'\\]*'|"[^"\\]*")
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
    | (?P<op>&&|\|\||<=|>=|==|!=|<>|[-+*/%^<>!?:(),])
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}
_FUNCTIONS: dict[str, tuple[int, int | None]] = {"abs": (1, 1), "max": (1, None), "min": (1, None)}


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExpressionSyntaxError(f"unexpected character {text[pos]!r} at {pos}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group()
        if kind == "space":
            continue
        if kind == "number":
            tokens.append(("num", float(value)))
        elif kind == "string":
            tokens.append(("str", value[1:-1]))
        elif kind == "name":
            lowered = value.lower()
            if lowered in _KEYWORDS:
                tokens.append(("op", _KEYWORDS[lowered]))
            elif lowered in ("true", "false"):
                tokens.append(("bool", lowered == "true"))
            else:
                tokens.append(("name", value))
        else:
            tokens.append(("op", value))
    tokens.append(("end", None))
    return tokens


# --- parser ------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def at_op(self, *ops: str) -> str | None:
        kind, value = self.tokens[self.pos]
        if kind == "op" and value in ops:
            self.pos += 1
            return str(value)
        return None

    def expect(self, op: str) -> None:
        if self.at_op(op) is None:
            raise ExpressionSyntaxError(f"expected {op!r}, found {self._describe()}")

    def _describe(self) -> str:
        kind, value = self.peek()
        return "end of expression" if kind == "end" else repr(value)

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionSyntaxError("expression is nested too deeply")

    def parse(self) -> Node:
        node = self.ternary()
        if self.peek()[0] != "end":
            raise ExpressionSyntaxError(f"unexpected {self._describe()}")
        return node

    def ternary(self) -> Node:
        self._enter()
        node = self.or_expr()
        if self.at_op("?"):
            when_true = self.ternary()
            self.expect(":")
            when_false = self.ternary()
            node = ("if", node, when_true, when_false)
        self.depth -= 1
        return node

    def _chain(self, kind: str, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        """Left-associative operators as one flat node, so long sums stay shallow."""
        first = operand()
        rest = []
        while op := self.at_op(*ops):
            rest.append((op, operand()))
        return (kind, first, tuple(rest)) if rest else first

    def or_expr(self) -> Node:
        return self._chain("or", ("||",), self.and_expr)

    def and_expr(self) -> Node:
        return self._chain("and", ("&&",), self.not_expr)

    def not_expr(self) -> Node:
        if self.at_op("!"):
            self._enter()
            node = ("not", self.not_expr())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        return self._chain("cmp", ("<", ">", "<=", ">=", "==", "!=", "<>"), self.additive)

    def additive(self) -> Node:
        return self._chain("arith", ("+", "-"), self.term)

    def term(self) -> Node:
        return self._chain("arith", ("*", "/", "%"), self.unary)

    def unary(self) -> Node:
        op = self.at_op("+", "-")
        if op is None:
            return self.power()
        self._enter()
        node = ("neg" if op == "-" else "pos", self.unary())
        self.depth -= 1
        return node

    def power(self) -> Node:
        base = self.atom()
        if not self.at_op("^"):
            return base
        self._enter()
        node = ("pow", base, self.unary())
        self.depth -= 1
        return node

    def atom(self) -> Node:
        kind, value = self.peek()
        if kind in ("num", "str", "bool"):
            self.pos += 1
            return ("const", value)
        if kind == "name":
            self.pos += 1
            if value in _FUNCTIONS and self.at_op("("):
                return self._call(value)
            parts = tuple(value.split("."))
            if any(part.startswith("_") for part in parts):
                raise ExpressionSyntaxError(f"invalid name {value!r}")
            return ("var", parts)
        if self.at_op("("):
            node = self.ternary()
            self.expect(")")
            return node
        raise ExpressionSyntaxError(f"unexpected {self._describe()}")

    def _call(self, name: str) -> Node:
        args: list[Node] = []
        if not self.at_op(")"):
            args.append(self.ternary())
            while self.at_op(","):
                args.append(self.ternary())
            self.expect(")")
        low, high = _FUNCTIONS[name]
        if len(args) < low or (high is not None and len(args) > high):
            wanted = f"exactly {low}" if high == low else f"at least {low}"
            raise ExpressionSyntaxError(f"{name}() takes {wanted} argument(s), got {len(args)}")
        return ("call", name, tuple(args))


@lru_cache(maxsize=256)
def compile_expression(text: str) -> Node:
    """Parse once (cached: every pool evaluates the same few expressions)."""
    if not isinstance(text, str):
        raise ExpressionSyntaxError("expression must be a string")
    if len(text) > MAX_LENGTH:
        raise ExpressionSyntaxError(f"expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExpressionSyntaxError("empty expression")
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise ExpressionSyntaxError("expression is nested too deeply") from None


# --- values ------------------------------------------------------------------------
_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0", ""})


def truth(value: Any) -> bool:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS or word in _FALSE_WORDS:
            return word in _TRUE_WORDS
        return True
    if isinstance(value, float) and math.isnan(value):
        return False
    return bool(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "false"):
            return 1.0 if word == "true" else 0.0
        try:
            return float(word)
        except ValueError:
            pass
    raise EvaluationError(f"{value!r} is not a number")


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if left is None or right is None:
        return left is right
    if isinstance(left, bool) or isinstance(right, bool):
        return truth(left) == truth(right)
    try:
        return _number(left) == _number(right)
    except EvaluationError:
        return False


_ORDER = {"<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!=", "<>"):
        return _equal(left, right) == (op == "==")
    if isinstance(left, str) and isinstance(right, str):
        try:  # numbers that arrived as strings still compare as numbers
            return bool(_ORDER[op](float(left), float(right)))
        except ValueError:
            return bool(_ORDER[op](left, right))
    return bool(_ORDER[op](_number(left), _number(right)))


def _arith(op: str, left: float, right: float) -> float:
    if op in ("/", "%") and right == 0:
        raise EvaluationError("division by zero")
    return left % right if op == "%" else float(_ARITH[op](left, right))


def _power(base: float, exponent: float) -> float:
    try:
        return math.pow(base, exponent)
    except (OverflowError, ValueError) as err:
        raise EvaluationError(f"{base} ^ {exponent}: {err}") from None


def _lookup(parts: tuple[str, ...], namespaces: Mapping[str, Any]) -> Any:
    name = ".".join(parts)
    if len(parts) < 2 or parts[0] not in namespaces:
        raise UnknownVariable(f"unknown variable {name!r}")
    value: Any = namespaces[parts[0]]
    for part in parts[1:]:
        if not isinstance(value, Mapping) or part not in value:
            raise UnknownVariable(f"unknown variable {name!r}")
        value = value[part]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise EvaluationError(f"{name} is not a number, string or boolean")


# --- evaluation --------------------------------------------------------------------
def _eval(node: Node, ns: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "var":
        return _lookup(node[1], ns)
    if kind == "arith":
        result = _number(_eval(node[1], ns))
        for op, operand in node[2]:
            result = _arith(op, result, _number(_eval(operand, ns)))
        return result
    if kind == "cmp":
        left = _eval(node[1], ns)
        outcome = True
        for op, operand in node[2]:
            right = _eval(operand, ns)
            outcome = _compare(op, left, right)
            left = outcome
        return outcome
    if kind == "and":
        if not truth(_eval(node[1], ns)):
            return False
        return all(truth(_eval(operand, ns)) for _, operand in node[2])
    if kind == "or":
        if truth(_eval(node[1], ns)):
            return True
        return any(truth(_eval(operand, ns)) for _, operand in node[2])
    if kind == "not":
        return not truth(_eval(node[1], ns))
    if kind == "neg":
        return -_number(_eval(node[1], ns))
    if kind == "pos":
        return _number(_eval(node[1], ns))
    if kind == "pow":
        return _power(_number(_eval(node[1], ns)), _number(_eval(node[2], ns)))
    if kind == "if":
        return _eval(node[2] if truth(_eval(node[1], ns)) else node[3], ns)
    if kind == "call":
        args = [_number(_eval(arg, ns)) for arg in node[2]]
        if node[1] == "abs":
            return abs(args[0])
        return max(args) if node[1] == "max" else min(args)
    raise EvaluationError(f"unknown node {kind!r}")  # pragma: no cover - parser never emits it


def evaluate(text: str, namespaces: Mapping[str, Mapping[str, Any]]) -> Any:
    """Evaluate `text` with `namespaces`; raises EvaluatorError on any problem."""
    tree = compile_expression(text)
    try:
        return _eval(tree, namespaces)
    except EvaluatorError:
        raise
    except (ArithmeticError, TypeError, ValueError) as err:
        raise EvaluationError(str(err)) from None
    except RecursionError:
        raise EvaluationError("expression is nested too deeply") from None
