"""Size bounds on the values a playground template makes (issue 12 item 7; attack review).

The playground's deadline (`playground_render.deadline`) stops a render between Python
bytecodes, and its output cap stops what is printed. Neither stops one C-level operation: a
``'x'|center(10**10)`` allocates 10 GB before any check runs, ``((10**1000)**1000)**20``
computes for a minute holding the GIL (every other request of the process waits), and a
loop doubling a string with ``~`` reaches gigabytes in under the deadline. So every value
a playground template makes is bounded here, before the operation where its size can be
known beforehand, after it otherwise:

* ``*`` and ``+`` of sequences, ``~`` (concatenation) and ``%`` formatting: the result's
  length is computed from the operands before the operation;
* integers: ``*`` and ``**`` refuse a result over `MAX_INT_BITS` bits (computed from the
  operands' bit lengths before the operation);
* calls (methods, global functions, filters) that can amplify their input — ``center``,
  ``ljust``, ``rjust``, ``zfill``, ``expandtabs``, ``replace``, ``join``, ``translate``,
  ``format``, ``format_map``, ``indent``, ``wordwrap``, ``lipsum``: an upper bound of the result
  (input size × the largest count, width or replacement length among the arguments, or the
  widths in a format string) is checked first;
* every call's result, and the object a method was called on (``list.extend`` grows it in
  place), is checked after the call: no value over `max_value` survives to be amplified
  again; ``extend`` and ``update`` are checked before they grow their object.

A refusal is a `SecurityError`, shown to the operator as "Refused by the sandbox: …" at its
line, like the sandbox's own refusals. Site pages are not affected: this is the playground's
overlay environment only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import Concat
from jinja2.sandbox import SandboxedEnvironment, SecurityError
from jinja2.utils import _PassArg

MAX_EXPONENT = 1000  # the largest integer exponent ``**`` accepts
MAX_INT_BITS = 64 * 1024  # ~19,700 decimal digits: far beyond any amount or count
MAX_VALUE_FACTOR = 16  # a value may be up to 16x the output cap (16 MB of text by default)

#: str methods whose result can be much longer than their input.
AMPLIFYING_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "join", "translate", "format",
     "format_map"}
)  # fmt: skip
#: filters whose result can be much longer than their input.
AMPLIFYING_FILTERS = frozenset({"center", "indent", "replace", "join", "format", "wordwrap"})
#: container methods that grow the object they are called on by their argument's size.
GROWING_METHODS = frozenset({"extend", "update"})
_FORMAT_METHODS = frozenset({"format", "format_map"})
_BRACE_WIDTHS = re.compile(r"\{[^{}]*?:[^{}]*?(\d+)(?:\.(\d+))?[^{}]*\}")
_PERCENT_WIDTHS = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d*)(?:\.(\d+))?")


def _size(value: Any) -> int:
    """Characters or items of ``value`` (0 for anything that is not a str, bytes or
    container). O(1): checked after every call."""
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        return len(value)
    return 0


def _joined_size(value: Any) -> int:
    """What ``join`` can make of ``value``: its items and the characters of its str items."""
    if isinstance(value, list | tuple):
        return len(value) + sum(len(item) for item in value if isinstance(item, str | bytes))
    return _size(value)


def _format_widths(text: Any) -> int:
    """The largest width or precision in the format specs of ``text`` (``{:>80}``, ``%080d``)."""
    if not isinstance(text, str):
        return 0
    largest = 0
    for pattern in (_BRACE_WIDTHS, _PERCENT_WIDTHS):
        for match in pattern.finditer(text):
            for group in match.groups():
                if group:
                    largest = max(largest, int(group) if len(group) < 20 else 10**20)
    return largest


def _multiplier(args: Iterable[Any], subject: Any) -> int:
    """The largest count, width or replacement length among a call's arguments."""
    largest = 1
    for arg in args:
        if isinstance(arg, bool):
            continue
        if isinstance(arg, int):
            largest = max(largest, abs(arg))
        elif isinstance(arg, str | bytes):
            largest = max(largest, len(arg))
        elif isinstance(arg, Mapping):  # str.translate's table
            lengths = [len(v) for v in arg.values() if isinstance(v, str | bytes)]
            largest = max(largest, *lengths, 1)
        elif isinstance(arg, list | tuple):  # sep.join(items): the separator repeats
            largest = max(largest, _size(subject))
    return largest


class Bounds:
    """The checks, for one environment (``max_value``: characters or items of any value)."""

    def __init__(self, max_value: int) -> None:
        self.max_value = max_value

    def refuse(self, what: str) -> SecurityError:
        return SecurityError(f"{what} would be longer than {self.max_value} characters or items")

    def check_value(self, value: Any, what: str = "a value") -> Any:
        """``value`` when it is within the bounds, else `SecurityError`."""
        if isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > MAX_INT_BITS:
                raise SecurityError(f"integers over {MAX_INT_BITS} bits are refused")
        elif _size(value) > self.max_value:
            raise self.refuse(what)
        return value

    def check_amplifier(self, name: str, subject: Any, args: tuple[Any, ...], kwargs: Any) -> None:
        """Refuse a call of an amplifying method/filter ``name`` whose result could be too long."""
        values = (*args, *kwargs.values())
        sizes = _joined_size(subject) + sum(_joined_size(v) for v in values)
        estimate = (1 + sizes) * _multiplier(values, subject)
        if name in _FORMAT_METHODS or name == "format":
            estimate *= max(1, _format_widths(subject))
        if estimate > self.max_value:
            raise self.refuse(f"the result of {name}()")

    def binop(self, limit: int) -> Callable[..., Any]:
        """The environment's ``call_binop`` for ``*``, ``**``, ``+`` and ``%`` (``limit``: the
        largest ``*`` of a sequence, the output cap)."""

        def call_binop(context: Any, op: str, left: Any, right: Any) -> Any:
            if op == "*":
                for seq, times in ((left, right), (right, left)):
                    sized = isinstance(seq, str | bytes | list | tuple)
                    if sized and isinstance(times, int) and len(seq) * times > limit:
                        raise SecurityError(
                            f"the result of * would be longer than {limit} items or characters"
                        )
                if _both_ints(left, right) and (
                    left.bit_length() + right.bit_length() > MAX_INT_BITS
                ):
                    raise SecurityError(f"integers over {MAX_INT_BITS} bits are refused")
                return left * right
            if op == "**":
                if isinstance(right, int) and abs(right) > MAX_EXPONENT:
                    raise SecurityError(f"exponents above {MAX_EXPONENT} are refused")
                if _both_ints(left, right) and left.bit_length() * abs(right) > MAX_INT_BITS:
                    raise SecurityError(f"integers over {MAX_INT_BITS} bits are refused")
                return left**right
            if op == "+":
                if _size(left) + _size(right) > self.max_value:
                    raise self.refuse("the result of +")
                return left + right
            if op == "%":
                if isinstance(left, str):
                    self.check_amplifier("format", left, (right,), {})
                return left % right
            raise SecurityError(f"operator {op!r} is not available")  # pragma: no cover

        return call_binop

    def concat(self, join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        """``~``: refused before joining when the parts are too long together."""
        if sum(_size(part) for part in parts) > self.max_value:
            raise self.refuse("the result of ~")
        return self.check_value(join(parts), "the result of ~")

    def wrap_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func`` (a filter) with its result checked, and its input first when it amplifies."""
        passes = 1 if _PassArg.from_obj(func) is not None else 0

        @functools.wraps(func)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            if name in AMPLIFYING_FILTERS and len(args) > passes:
                self.check_amplifier(name, args[passes], args[passes + 1 :], kwargs)
            return self.check_value(func(*args, **kwargs), f"the result of |{name}")

        return bounded


def _both_ints(left: Any, right: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right))


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with ``~`` going through ``environment.bounded_concat``."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat(")
        if frame.eval_ctx.volatile:
            self.write("(markup_join if context.eval_ctx.volatile else str_join)")
        elif frame.eval_ctx.autoescape:
            self.write("markup_join")
        else:
            self.write("str_join")
        self.write(", (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def bound(env: SandboxedEnvironment, max_value: int, output_cap: int) -> SandboxedEnvironment:
    """Install the bounds of the module docstring on ``env`` (the playground's own overlay:
    its filters and globals are replaced by bounded copies, the site's are untouched)."""
    bounds = Bounds(max_value)
    env.intercepted_binops = frozenset({"*", "**", "+", "%"})
    env.call_binop = bounds.binop(output_cap)  # type: ignore[method-assign]
    env.code_generator_class = BoundedCodeGenerator
    env.bounded_concat = bounds.concat  # type: ignore[attr-defined]
    env.filters = {name: bounds.wrap_filter(name, f) for name, f in env.filters.items()}
    lipsum = env.globals.get("lipsum")
    if callable(lipsum):
        env.globals = dict(env.globals)
        env.globals["lipsum"] = _bounded_lipsum(bounds, lipsum)
    unbounded_call = env.call

    def call(context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        # (The sandbox hands out str.format wrapped, with the method as ``__wrapped__``.)
        method = getattr(obj, "__wrapped__", obj)
        subject = getattr(method, "__self__", None)
        name = getattr(method, "__name__", "")
        if isinstance(subject, str | bytes) and name in AMPLIFYING_METHODS:
            bounds.check_amplifier(name, subject, args, kwargs)
        if name in GROWING_METHODS and args and _size(subject) + _size(args[0]) > max_value:
            raise bounds.refuse(f"the object of .{name}()")
        result = unbounded_call(context, obj, *args, **kwargs)
        if subject is not None and not isinstance(subject, type):
            bounds.check_value(subject, f"the object of .{name}()")
        return bounds.check_value(result, f"the result of {name or 'the call'}()")

    env.call = call  # type: ignore[method-assign]
    return env


def _bounded_lipsum(bounds: Bounds, lipsum: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(lipsum)
    def bounded(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
        counts = [v for v in (n, min, max) if isinstance(v, int) and not isinstance(v, bool)]
        if len(counts) == 3 and counts[0] * max * 20 > bounds.max_value:  # words ≤ 20 chars
            raise bounds.refuse("the result of lipsum()")
        return lipsum(n, html, min, max)

    return bounded
