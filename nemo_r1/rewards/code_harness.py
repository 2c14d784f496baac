"""Test harnesses for model-written Python, and the trusted comparison of their outputs.

Two test formats:
- `function_call` (MBPP+/EvalPlus): call `entry_point(*args)` on each input; expected outputs come
  from running the canonical solution on the same inputs (`function_call_info`).
- `stdin_stdout` (open-r1 `verification_info.test_cases`): run the program with `input` on stdin,
  compare stdout with `output` token by token.

Why outputs are compared here and not inside the sandbox: the candidate runs in the same
interpreter as any in-sandbox checker, so it could return an object whose `__eq__` is always True,
or patch the checker. The harness only serializes results to tagged JSON (exact types, no pickle);
the parent decodes that data and compares. Results are read only from lines carrying a random
per-run marker, so ordinary prints cannot forge them (a program that inspects the harness's own
frames could; the marker is not a secret from it).
"""

from __future__ import annotations

import json
import math
import secrets
from typing import Any

from nemo_r1.sandbox import Program, RunResult

_HARNESS = '''
import copy as _copy, json as _json, math as _math, signal as _signal, sys as _sys, time as _time
_MARK = {mark!r}
_OUT = _sys.stdout

def _enc(x, d=0):
    t = type(x)
    if d > 50:
        return {{"__repr__": "<too deep>", "__type__": t.__name__}}
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if abs(x) < 2 ** 53 else {{"__int__": str(x)}}
    if t is float:
        return x if _math.isfinite(x) else {{"__float__": repr(x)}}
    if t is list:
        return [_enc(v, d + 1) for v in x]
    if t is tuple:
        return {{"__tuple__": [_enc(v, d + 1) for v in x]}}
    if t is set or t is frozenset:
        return {{"__set__": [_enc(v, d + 1) for v in x]}}
    if t is dict:
        return {{"__dict__": [[_enc(k, d + 1), _enc(v, d + 1)] for k, v in x.items()]}}
    if t is complex:
        return {{"__complex__": [_enc(x.real), _enc(x.imag)]}}
    return {{"__repr__": repr(x)[:1000], "__type__": t.__name__}}

def _dec(x):
    if type(x) is list:
        return [_dec(v) for v in x]
    if type(x) is not dict:
        return x
    if "__tuple__" in x:
        return tuple(_dec(v) for v in x["__tuple__"])
    if "__set__" in x:
        return set(_dec(v) for v in x["__set__"])
    if "__dict__" in x:
        return {{_dec(k): _dec(v) for k, v in x["__dict__"]}}
    if "__int__" in x:
        return int(x["__int__"])
    if "__float__" in x:
        return float(x["__float__"])
    if "__complex__" in x:
        return complex(_dec(x["__complex__"][0]), _dec(x["__complex__"][1]))
    return x

def _emit(line):
    _OUT.write("\\n" + _MARK + line + "\\n")
    _OUT.flush()

class _InputTimeout(BaseException):
    pass

def _alarm(signum, frame):
    raise _InputTimeout()

def _main():
    job = _json.loads(_sys.stdin.read())
    ns = {{"__name__": "solution"}}
    try:
        exec(compile({code!r}, "solution.py", "exec"), ns)
        fn = ns[{entry!r}]
    except BaseException as e:
        _emit(_json.dumps({{"load_error": type(e).__name__}}))
        return
    _signal.signal(_signal.SIGPROF, _alarm)
    for args, limit in zip(job["inputs"], job["limits"]):
        args = _dec(args)
        t0 = _time.process_time()
        # The CPU timer covers the call and the encoding of its result (a huge result is slow to
        # encode); the outer try also catches a timeout that fires inside the inner finally.
        try:
            try:
                _signal.setitimer(_signal.ITIMER_PROF, limit)
                line = _json.dumps({{"ok": _enc(fn(*_copy.deepcopy(args)))}})
            finally:
                _signal.setitimer(_signal.ITIMER_PROF, 0)
            if len(line) > {max_line}:
                line = _json.dumps({{"error": "output_too_large"}})
        except _InputTimeout:
            line = _json.dumps({{"error": "timeout"}})
        except BaseException as e:
            line = _json.dumps({{"error": type(e).__name__}})
        _emit(line[:-1] + ', "t": %r}}' % (_time.process_time() - t0))

_main()
'''


MAX_RESULT_CHARS = 1 << 20
"""A single result larger than this (as JSON) counts as an error: outputs that big are not tests."""


def encode_value(x: Any, depth: int = 0) -> Any:
    """Python value -> the harness's tagged JSON (the same tags the harness writes)."""
    t = type(x)
    if x is None or t in (bool, str):
        return x
    if t is int:
        return x if abs(x) < 2**53 else {"__int__": str(x)}
    if t is float:
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if t is list:
        return [encode_value(v, depth + 1) for v in x]
    if t is tuple:
        return {"__tuple__": [encode_value(v, depth + 1) for v in x]}
    if t in (set, frozenset):
        return {"__set__": [encode_value(v, depth + 1) for v in x]}
    if t is dict:
        return {"__dict__": [[encode_value(k, depth + 1), encode_value(v, depth + 1)] for k, v in x.items()]}
    if t is complex:
        return {"__complex__": [encode_value(x.real), encode_value(x.imag)]}
    raise TypeError(f"cannot encode a {t.__name__} as a test input")


def function_call_program(code: str, entry_point: str, inputs: list[Any], limits_s: list[float]) -> tuple[Program, str]:
    """A harness program calling `entry_point` on every (tagged-JSON) input with a per-input CPU-time
    limit (CPU, not wall: CPU contention must not turn a correct solution into a timeout), and its
    result marker."""
    mark = f"@@nemo-r1-{secrets.token_hex(8)}@@"
    stdin = json.dumps({"inputs": inputs, "limits": limits_s})
    return Program(_HARNESS.format(mark=mark, code=code, entry=entry_point, max_line=MAX_RESULT_CHARS), stdin), mark


def parse_function_results(run: RunResult, mark: str, n: int) -> list[dict[str, Any]]:
    """The harness's per-input results (`{"ok": value, "t": s}` or `{"error": name}`), padded."""
    out: list[dict[str, Any]] = []
    for line in run.stdout.splitlines():
        if mark not in line:
            continue
        try:
            obj = json.loads(line.rsplit(mark, 1)[1])
        except ValueError:
            continue
        if "load_error" in obj:
            break
        out.append(obj)
    out = out[:n]
    return out + [{"error": "missing"}] * (n - len(out))


class Opaque:
    """A value the harness could only repr (a custom class): equal only to the same type and repr."""

    def __init__(self, type_name: str, text: str) -> None:
        self.key = (type_name, text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Opaque{self.key}"


def decode(x: Any) -> Any:
    """Tagged JSON -> Python values with their exact container types."""
    if isinstance(x, list):
        return [decode(v) for v in x]
    if not isinstance(x, dict):
        return x
    if "__tuple__" in x:
        return tuple(decode(v) for v in x["__tuple__"])
    if "__set__" in x:
        return frozenset(decode(v) for v in x["__set__"])
    if "__dict__" in x:
        return {decode(k): decode(v) for k, v in x["__dict__"]}
    if "__int__" in x:
        return int(x["__int__"])
    if "__float__" in x:
        return float(x["__float__"])
    if "__complex__" in x:
        return complex(decode(x["__complex__"][0]), decode(x["__complex__"][1]))
    if "__repr__" in x:
        return Opaque(str(x.get("__type__")), str(x["__repr__"]))
    raise ValueError(f"unknown tagged value {sorted(x)}")


def _has_float(x: Any) -> bool:
    if isinstance(x, float):
        return True
    if isinstance(x, list | tuple):
        return any(_has_float(v) for v in x)
    return False


def _close(out: Any, exp: Any, atol: float) -> bool:
    num = (int, float)
    if isinstance(out, num) and isinstance(exp, num) and not isinstance(out, bool) and not isinstance(exp, bool):
        if isinstance(out, float) and isinstance(exp, float) and math.isnan(out) and math.isnan(exp):
            return True
        return out == exp or math.isclose(out, exp, rel_tol=1e-7, abs_tol=atol)
    if isinstance(out, list | tuple) and type(out) is type(exp):
        return len(out) == len(exp) and all(_close(o, e, atol) for o, e in zip(out, exp, strict=True))
    return out == exp


def outputs_match(out: Any, exp: Any, atol: float = 0.0) -> bool:
    """EvalPlus semantics: exact `==`, else for float outputs a tolerance (atol, or 1e-6 if atol is 0)."""
    try:
        if out == exp:
            return True
    except Exception:  # noqa: BLE001 - e.g. comparing incomparable decoded values
        return False
    if _has_float(exp) or atol:
        return _close(out, exp, atol or 1e-6)
    return _close(out, exp, 0.0) if _has_float(out) else False


def stdout_matches(stdout: str, expected: str) -> bool:
    """Line by line, whitespace-separated tokens equal (blank lines and spacing ignored)."""
    def norm(s: str) -> list[list[str]]:
        return [toks for toks in (ln.split() for ln in s.splitlines()) if toks]
    return norm(stdout) == norm(expected)
