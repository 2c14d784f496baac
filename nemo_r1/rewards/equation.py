"""Read a countdown equation without eval: bounded text, a character whitelist, `ast.parse` walked
with a node whitelist, exact arithmetic in `fractions.Fraction`.

Why not `eval` behind a regex (what TinyZero and mini-deepseek-r1 do): `9**9**9` passes a
`[\\d+\\-*/().\\s]` regex and hangs the scorer; a 10,000-digit literal or thousands of nested
parentheses crash or stall the parser. Here every such input is refused before any arithmetic.

Accepted: non-negative integer literals (plain digits), binary `+ - * /`, parentheses. Refused:
unary signs (each given number is used as given), `**`, `//`, `%`, floats, names, calls and
anything else, text over `max_chars`, nesting over `max_depth`. `/` is exact division, so
`(1 + 2) / 3` is 1 and `7 / 2` is 7/2.
"""

from __future__ import annotations

import ast
import operator
from dataclasses import dataclass
from fractions import Fraction

_CHARS = frozenset("0123456789+-*/() \t\n")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class EquationError(ValueError):
    """The text is not an equation this reader accepts; the message says why."""


@dataclass(frozen=True)
class Equation:
    value: Fraction
    numbers: tuple[int, ...]
    """The integer literals in the order written."""


def _depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    return deepest


def parse_equation(text: str, max_chars: int = 200, max_depth: int = 16) -> Equation:
    """The value and literals of an arithmetic expression, or EquationError naming the problem."""
    text = text.strip()
    if not text:
        raise EquationError("empty equation")
    if len(text) > max_chars:
        raise EquationError(f"equation longer than {max_chars} characters")
    bad = set(text) - _CHARS
    if bad:
        raise EquationError(f"characters outside digits, + - * / and parentheses: {''.join(sorted(bad))[:20]!r}")
    if _depth(text) > max_depth:
        raise EquationError(f"parentheses nested deeper than {max_depth}")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise EquationError(f"not an expression: {type(e).__name__}") from None
    numbers: list[int] = []
    value = _eval(tree.body, numbers)
    return Equation(value, tuple(numbers))


def _eval(node: ast.AST, numbers: list[int]) -> Fraction:
    # Recursion depth is bounded by max_depth plus the operator count, itself bounded by max_chars.
    if isinstance(node, ast.Constant) and type(node.value) is int:
        numbers.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left, numbers), _eval(node.right, numbers)
        if isinstance(node.op, ast.Div) and right == 0:
            raise EquationError("division by zero")
        return _OPS[type(node.op)](left, right)
    what = type(node.op).__name__ if isinstance(node, ast.BinOp | ast.UnaryOp) else type(node).__name__
    raise EquationError(f"{what} is not allowed (only integers, + - * / and parentheses)")
