"""The sandbox marketers' templates run in: environments, limits and the
per-message work budget (used by ``app.services.rendering``).

Rules:
- templates run in Jinja2's ``ImmutableSandboxedEnvironment``: no attribute
  starting with ``_``, no mutation of lists or dicts, and on top of that only
  an allow-list of attributes (a few string methods, ``get``/``items``/
  ``keys``/``values`` of mappings, the ``loop`` variable's fields); anything
  else fails with ``SecurityError`` instead of rendering empty;
- there is no loader, so ``{% include %}``/``{% extends %}``/``{% import %}``
  cannot reach a file; the only global is a capped ``range``;
- filters are an allow-list of Jinja's own, each charged to the budget and
  checked against ``MAX_VALUE_LENGTH``; ``str.format`` and ``%`` formatting
  of strings are refused (a width spec can allocate gigabytes);
- ``+ * ** %`` and ``~`` check the size of their result *before* computing it;
- every loop iteration charges the loop body's weight (its number of AST
  nodes) to a per-message budget of ``MAX_WORK`` units, and the render fails
  once the message has used ``MAX_RENDER_CPU_SECONDS`` of CPU time, so a
  hostile template fails in milliseconds instead of hanging a runner;
- a placeholder without a value renders empty and is recorded; ``None``
  renders empty; a value that is not text, a number, a date or a list of
  those (a function, a mapping, a template object) cannot be output.
"""

from __future__ import annotations

import datetime
import functools
import numbers
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from jinja2 import ChainableUndefined, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateRuntimeError, UndefinedError
from jinja2.filters import FILTERS
from jinja2.runtime import Context, LoopContext, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from jinja2.visitor import NodeTransformer

MAX_RANGE = 1_000  # items one range() may produce
MAX_VALUE_LENGTH = 100_000  # characters or items of any value a template computes
MAX_INT_BITS = 4_096  # size of an integer a template may compute
MAX_WORK = 250_000  # budget units per message (≈ one AST node executed each)
MAX_RENDER_CPU_SECONDS = 0.1  # backstop for work the units do not capture
CLOCK_CHECK_EVERY = 2_000  # units between two looks at the CPU clock
CALL_WEIGHT = 10  # a function call (click_url signs a token: an HMAC)

LOOP_FILTER = "_sluice_loop"
CONCAT_FILTER = "_sluice_concat"

# Methods a template may call on a value; everything else is refused. All are
# linear in the value's size and create nothing larger than it.
STRING_METHODS = frozenset(
    {"upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip"}
    | {"startswith", "endswith", "split"}
)
MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})
LOOP_FIELDS = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length"}
    | {"depth", "depth0", "previtem", "nextitem", "cycle", "changed"}
)

# Jinja filters a template may use. Left out on purpose: format (width specs),
# center/indent/wordwrap (allocate by argument), safe (would let contact data
# inject markup), tojson/pprint/string/list/xmlattr (print Python structures),
# attr/map/select/batch/slice/sum/sort/groupby (not needed by a mail template).
PUBLIC_FILTERS = (
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "e",
    "escape",
    "first",
    "float",
    "int",
    "join",
    "last",
    "length",
    "lower",
    "replace",
    "round",
    "striptags",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "wordcount",
)

# Types whose value can be output as text. Lists and tuples of them are
# output joined by ", " (a custom field can hold a JSON list).
SCALAR_TYPES: tuple[type, ...] = (
    str,
    numbers.Number,
    datetime.date,
    datetime.time,
)


class RenderError(ValueError):
    """A template failed while rendering one message: a hostile or over-limit
    construct, or an operation that cannot work (``str(error)`` says which)."""


@dataclass
class RenderState:
    """What one message's render has used so far; kept in a context variable
    so the sandbox hooks (which see no render arguments) can charge it."""

    cpu_deadline: float
    work: int = 0
    output: int = 0
    next_clock_check: int = CLOCK_CHECK_EVERY
    empty_placeholders: set[str] = field(default_factory=set)

    def charge(self, units: int) -> None:
        """Add ``units`` of work; fail once the budget or CPU time is spent."""
        self.work += units
        if self.work > MAX_WORK:
            raise RenderError(
                "the template does too much work for one message "
                f"(over {MAX_WORK:,} steps: a loop runs too often)"
            )
        if self.work >= self.next_clock_check:
            self.next_clock_check = self.work + CLOCK_CHECK_EVERY
            if time.thread_time() > self.cpu_deadline:
                raise RenderError(
                    f"the template took longer than {MAX_RENDER_CPU_SECONDS} s to render"
                )


_STATE: ContextVar[RenderState | None] = ContextVar("sluice_render_state", default=None)


def start_render() -> tuple[RenderState, Token[RenderState | None]]:
    """Begin one message's render: a fresh budget; returns it and the token
    to hand to ``end_render``."""
    state = RenderState(cpu_deadline=time.thread_time() + MAX_RENDER_CPU_SECONDS)
    return state, _STATE.set(state)


def end_render(token: Token[RenderState | None]) -> None:
    _STATE.reset(token)


def _charge(units: int) -> None:
    """Charge the current render. Outside a render (Jinja folds constant
    expressions while compiling) there is nothing to charge: the size checks
    still apply, and constants are bounded by the template's size."""
    state = _STATE.get()
    if state is not None:
        state.charge(units)


def _size_units(values: Iterable[object]) -> int:
    """Budget units for handling these values: 1 per 100 characters/items."""
    size = 0
    for value in values:
        if isinstance(value, (str, list, tuple, dict)):
            size += len(value)
    return 1 + size // 100


def output_too_long(limit: int) -> RenderError:
    """The error of a message whose parts passed ``limit`` characters."""
    return RenderError(f"the message is longer than {limit:,} characters")


def call_units(args: tuple[object, ...]) -> int:
    """Budget units a template's function call is charged."""
    return CALL_WEIGHT + _size_units(args)


def _check_length(length: int, what: str) -> None:
    if length > MAX_VALUE_LENGTH:
        raise RenderError(f"{what} would be longer than {MAX_VALUE_LENGTH:,} characters or items")


class RecordingUndefined(ChainableUndefined):
    """A missing value: renders empty, chains (``{{ a.b.c }}`` is empty too)
    and records its name so the pre-flight check can report it. An unsafe
    attribute fails at once with ``SecurityError`` instead of rendering empty."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[TemplateRuntimeError] = UndefinedError,
    ) -> None:
        if exc is SecurityError:
            raise SecurityError(hint or "unsafe access")
        super().__init__(hint, obj, name, exc)
        state = _STATE.get()
        if state is not None and isinstance(name, str):
            if obj is missing:
                state.empty_placeholders.add(name)
            elif isinstance(obj, CustomFields):
                state.empty_placeholders.add(f"custom[{name!r}]")


class CustomFields(dict[str, object]):
    """The ``custom`` placeholder: every custom field by its key as written.
    A type of its own so a missing key is reported as ``custom['Key']``."""


def finalize_output(value: object) -> object:
    """What ``{{ value }}`` outputs: ``None`` and missing values as "", text,
    numbers and dates as themselves, lists of those joined by ", ";
    anything else (a function, a mapping, a template object) is refused —
    its ``repr`` would leak Python internals."""
    if isinstance(value, SCALAR_TYPES):
        return value
    if value is None or isinstance(value, ChainableUndefined):
        return ""
    if isinstance(value, (list, tuple)):
        _check_length(len(value), "a list")
        if all(isinstance(item, SCALAR_TYPES) for item in value):
            text = ", ".join(str(item) for item in value)
            _check_length(len(text), "a list as text")
            return text
    raise RenderError(f"cannot output a value of type {type(value).__name__!r}")


def capped_range(*args: int) -> range:
    """``range`` limited to ``MAX_RANGE`` items (Jinja's own allows 100,000)."""
    try:
        numbers_range = range(*args)
        length = len(numbers_range)
    except (TypeError, ValueError, OverflowError) as error:
        raise RenderError(f"range(): {error}") from None
    if length > MAX_RANGE:
        raise RenderError(f"range() is limited to {MAX_RANGE:,} items")
    return numbers_range


def _checked_product(left: object, right: object) -> object:
    """``*`` whose result is known to fit before it is computed."""
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
            _check_length(len(sequence) * max(count, 0), "a repeated value")
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise RenderError("a number in the template would be too large")
    return left * right  # type: ignore[operator]


def _checked_power(base: object, exponent: object) -> object:
    """``**`` refused when the result would exceed ``MAX_INT_BITS`` bits."""
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and abs(base) > 1
        and exponent > 0
        and max(base.bit_length() - 1, 1) * exponent > MAX_INT_BITS
    ):
        raise RenderError("a number in the template would be too large")
    return base**exponent  # type: ignore[operator]


def _checked_sum(left: object, right: object) -> object:
    if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
        _check_length(len(left) + len(right), "a joined value")
    return left + right  # type: ignore[operator]


def _checked_modulo(left: object, right: object) -> object:
    if isinstance(left, str):
        raise RenderError("% formatting of text is not supported; write {{ value }} instead")
    return left % right  # type: ignore[operator]


_CHECKED_BINOPS: dict[str, Callable[[object, object], object]] = {
    "*": _checked_product,
    "**": _checked_power,
    "+": _checked_sum,
    "%": _checked_modulo,
}


@pass_context
def _counted_loop(context: Context, iterable: Iterable[object], weight: int) -> Iterator[object]:
    """Wrapped around every ``{% for %}``'s iterable: each iteration charges
    the body's weight to the message's budget."""
    _charge(1)
    for item in iterable:
        _charge(weight)
        yield item


@pass_context
def _checked_concat(context: Context, items: list[object]) -> str:
    """``a ~ b`` with a size check first (repeated ``~`` doubles a string)."""
    length = 0
    for item in items:
        if not (
            isinstance(item, SCALAR_TYPES) or item is None or isinstance(item, ChainableUndefined)
        ):
            raise RenderError(f"cannot join a value of type {type(item).__name__!r} with ~")
        length += len(str(item))
    _check_length(length, "a joined value")
    _charge(_size_units(items))
    join = markup_join if context.eval_ctx.autoescape else str_join
    return join(items)


def _check_replace(text: object, old: object, new: object, count: object = None) -> None:
    if (
        isinstance(text, str)
        and isinstance(old, str)
        and isinstance(new, str)
        and len(new) > len(old)
    ):
        occurrences = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            occurrences = min(occurrences, count)
        _check_length(len(text) + occurrences * (len(new) - len(old)), "a replaced value")


def _check_join(items: object, separator: object = "", attribute: object = None) -> None:
    if attribute is not None:
        raise RenderError("join(attribute=…) is not supported")
    if not isinstance(items, (list, tuple, range, str)):
        raise RenderError("join needs a list")
    length = 0
    for item in items:
        if not isinstance(item, SCALAR_TYPES):
            raise RenderError(f"cannot join a value of type {type(item).__name__!r}")
        length += len(str(item)) + (len(separator) if isinstance(separator, str) else 0)
    _check_length(length, "a joined value")


_FILTER_PRECHECKS: dict[str, Callable[..., None]] = {
    "replace": _check_replace,
    "join": _check_join,
}


def _charged_filter(name: str, filter_function: Callable[..., Any]) -> Callable[..., Any]:
    """A Jinja filter that charges the budget for the size of its input and
    checks the size of its output (``urlencode`` and ``escape`` grow text;
    chained, they would grow it without bound)."""
    precheck = _FILTER_PRECHECKS.get(name)
    pass_arg = getattr(filter_function, "jinja_pass_arg", None)
    skip = 0 if pass_arg is None else 1  # the context/environment argument

    @functools.wraps(filter_function)
    def charged(*args: Any, **kwargs: Any) -> Any:
        _charge(_size_units(args))
        if precheck is not None:
            precheck(*args[skip:], **kwargs)
        result = filter_function(*args, **kwargs)
        if isinstance(result, (str, list, tuple)):
            _check_length(len(result), f"the result of the {name} filter")
        return result

    return charged


def _node_weight(body: Iterable[nodes.Node]) -> int:
    """Nodes in a loop body, not counting nested loops' bodies (their own
    iterations charge them): the cost of one iteration, roughly."""
    weight = 0
    stack = list(body)
    while stack:
        node = stack.pop()
        weight += 1
        if isinstance(node, nodes.For):
            stack.append(node.iter)
            continue
        stack.extend(node.iter_child_nodes())
    return weight


class BudgetTransformer(NodeTransformer):
    """Rewrites a parsed template so loops and ``~`` charge the budget: the
    iterable of every ``{% for %}`` goes through ``_sluice_loop(weight)`` and
    every ``a ~ b`` becomes ``[a, b]|_sluice_concat``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        weight = 1 + _node_weight([*node.body, *([node.test] if node.test else [])])
        self.generic_visit(node)
        node.iter = nodes.Filter(
            node.iter,
            LOOP_FILTER,
            [nodes.Const(weight, lineno=node.lineno)],
            [],
            None,
            None,
            lineno=node.lineno,
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, CONCAT_FILTER, [], [], None, None, lineno=node.lineno)


class RecipientFunction:
    """``click_url``/``tracking_url`` of one recipient, remembered for the
    render: the HTML and the text part call each with the same argument, and
    each call signs a token. Sluice's own code, so the sandbox calls it
    without its usual checks (the arguments still come from the template)."""

    __slots__ = ("_function", "_results")

    def __init__(self, function: Callable[[Any], str]) -> None:
        self._function = function
        self._results: dict[object, str] = {}

    def __call__(self, argument: object) -> str:
        try:
            return self._results[argument]
        except KeyError:
            result = self._results[argument] = self._function(argument)
            return result
        except TypeError:  # an unhashable argument: the function will say what is wrong
            return self._function(argument)


class SluiceEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox with Sluice's allow-lists, size checks and budget hooks."""

    intercepted_binops = frozenset(_CHECKED_BINOPS)

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=RecordingUndefined,
            finalize=finalize_output,
            loader=None,
            auto_reload=False,
        )
        # Only a capped range: no dict, lipsum, cycler, joiner or namespace.
        self.globals.clear()
        self.globals["range"] = capped_range
        self.filters = {name: _charged_filter(name, FILTERS[name]) for name in PUBLIC_FILTERS}
        self.filters[LOOP_FILTER] = _counted_loop
        self.filters[CONCAT_FILTER] = _checked_concat

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Only the allow-listed attributes, on top of the sandbox's rules."""
        if isinstance(obj, ChainableUndefined):
            allowed = True  # chaining on a missing value: stays missing
        elif isinstance(obj, str):
            allowed = attr in STRING_METHODS
        elif isinstance(obj, Mapping):
            allowed = attr in MAPPING_METHODS
        elif isinstance(obj, LoopContext):
            allowed = attr in LOOP_FIELDS
        else:
            allowed = False
        return allowed and super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        """No ``str.format``: the sandbox would allow it, but a width spec
        (``'{:>999999999}'``) allocates without limit."""
        return None

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _charge(1)
        return _CHECKED_BINOPS[operator](left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call made by a template: charged, and refused for classes
        (a template can reach none, but this keeps it so)."""
        _charge(call_units(args))
        if type(__obj) is RecipientFunction and len(args) == 1 and not kwargs:
            return __obj(args[0])
        if isinstance(__obj, type):
            raise SecurityError(f"calling {__obj.__name__!r} is not allowed")
        return super().call(__context, __obj, *args, **kwargs)


@functools.cache
def html_environment() -> SluiceEnvironment:
    """For the HTML part: contact data is HTML-escaped."""
    return SluiceEnvironment(autoescape=True)


@functools.cache
def text_environment() -> SluiceEnvironment:
    """For the subject and the plain-text part: nothing is escaped (CR/LF in
    a subject is composition's to refuse)."""
    return SluiceEnvironment(autoescape=False)
