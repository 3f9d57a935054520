"""The render plan: a fast path for template parts that only substitute
values (docs/messages.md, "The render plan"; used by ``app.services.rendering``).

Most mass-email parts are literal text with ``{{ FIRST_NAME }}``,
``{{ custom['Plan'] }}``, ``{{ click_url(3) }}`` or ``{{ opt_out_url }}`` in
it. For such a part the output is fixed text between slots, so rendering it
for a recipient is a join: no Jinja context, no generated code. A part is a
plan when, after the sandbox's checks and ``BudgetTransformer``, its top
level holds only output (``{{ … }}`` and text, no tags) and every output
expression is
- literal text, or a constant expression Jinja folds while compiling;
- a slot: a bare name (``FIRST_NAME``), ``custom`` with a constant string key
  (``custom['Plan']``), or ``click_url``/``tracking_url`` called with one
  constant argument.

The contract: a plan's output, its recorded empty placeholders, its budget
charges and its errors are exactly those of the compiled Jinja template, for
every recipient. So the literal text is not computed here but taken from
Jinja itself: the compiled template is rendered once with a unique marker as
every slot's value, and the output is split at the markers (which pass
through ``finalize_output`` and escaping unchanged). Each slot then does
per recipient what Jinja's generated code does for that expression: resolve
the name (recipient variables, then the environment's globals, else a
``RecordingUndefined`` that records it), ``environment.getitem`` for
``custom``, the sandbox's call charge for ``click_url``, then
``finalize_output`` and ``markupsafe.escape`` (HTML) or ``str`` (subject,
text).
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from jinja2 import Template, nodes
from markupsafe import escape

from app.services.rendering_sandbox import (
    CustomFields,
    RecipientFunction,
    RenderError,
    RenderState,
    SluiceEnvironment,
    call_units,
    end_render,
    finalize_output,
    output_too_long,
    start_render,
)

RECIPIENT_FUNCTIONS = frozenset({"click_url", "tracking_url"})
# Bare names that never output a value (Sluice's functions and mapping, the
# capped range) or that Jinja binds itself: left to the Jinja path, which
# reports them as it always has.
_NOT_SLOTS = RECIPIENT_FUNCTIONS | {"custom", "range", "loop", "self", "caller"}
_NOT_SLOTS |= {"varargs", "kwargs"}


@dataclass(frozen=True)
class NameSlot:
    """``{{ name }}``."""

    name: str

    def value(
        self, variables: Mapping[str, object], environment: SluiceEnvironment, state: RenderState
    ) -> object:
        return _resolve(variables, environment, self.name)


@dataclass(frozen=True)
class CustomSlot:
    """``{{ custom['Key'] }}``: a missing key records ``custom['Key']``
    through the sandbox's ``getitem``, as Jinja's code does."""

    key: str

    def value(
        self, variables: Mapping[str, object], environment: SluiceEnvironment, state: RenderState
    ) -> object:
        return environment.getitem(_resolve(variables, environment, "custom"), self.key)


@dataclass(frozen=True)
class CallSlot:
    """``{{ click_url(3) }}``/``{{ tracking_url('name') }}``: charged as the
    sandbox charges a call, then the recipient's ``RecipientFunction``, so
    its tokens are signed once and shared between parts."""

    function: str
    argument: str | int
    units: int  # what SluiceEnvironment.call charges for it

    def value(
        self, variables: Mapping[str, object], environment: SluiceEnvironment, state: RenderState
    ) -> object:
        function = _resolve(variables, environment, self.function)
        state.charge(self.units)
        if type(function) is not RecipientFunction:
            # render() always binds both names; a plan relies on it.
            raise RenderError(f"{self.function} is not Sluice's own function")
        return function(self.argument)


Slot = NameSlot | CustomSlot | CallSlot


@dataclass(frozen=True, eq=False)
class RenderPlan:
    """One part as ``literals[0] slot[0] literals[1] … slot[n-1] literals[n]``."""

    literals: tuple[str, ...]
    slots: tuple[Slot, ...]
    environment: SluiceEnvironment
    # The literals with a gap after each but the last, filled per recipient.
    _template: list[str] = field(init=False, repr=False)
    # Each slot with the length of the literal after it.
    _steps: tuple[tuple[Slot, int], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        chunks = [""] * (2 * len(self.literals) - 1)
        chunks[0::2] = self.literals
        object.__setattr__(self, "_template", chunks)
        lengths = [len(literal) for literal in self.literals[1:]]
        object.__setattr__(self, "_steps", tuple(zip(self.slots, lengths, strict=True)))

    def render(self, variables: Mapping[str, object], state: RenderState, limit: int) -> str:
        """The part for one recipient, adding its length to ``state.output``.

        The output is counted as the Jinja path counts its chunks: once the
        count passes ``limit`` no further slot is evaluated (so a later
        slot's error never replaces the length error), and memory never
        holds much more than ``limit`` characters of values."""
        environment = self.environment
        output: Callable[[object], str] = escape if environment.autoescape else str
        count = state.output + len(self.literals[0])
        if count > limit:
            raise output_too_long(limit)
        values: list[str] = []
        for slot, literal_length in self._steps:
            value = output(finalize_output(slot.value(variables, environment, state)))
            count += len(value) + literal_length
            if count > limit:
                raise output_too_long(limit)
            values.append(value)
        state.output = count
        chunks = self._template.copy()
        chunks[1::2] = values
        return "".join(chunks)


def plan_part(
    tree: nodes.Template, template: Template, environment: SluiceEnvironment
) -> RenderPlan | None:
    """The plan of a checked, transformed and compiled part, or None when
    the part needs Jinja (tags, filters on values, attribute access …)."""
    slots = _slots(tree, environment)
    if slots is None:
        return None
    literals = _literals(template, slots)
    if literals is None:
        return None
    return RenderPlan(literals=literals, slots=tuple(slots), environment=environment)


def _slots(tree: nodes.Template, environment: SluiceEnvironment) -> list[Slot] | None:
    """Every output expression's slot in order, or None when the part is
    not a plan."""
    eval_context = nodes.EvalContext(environment)
    slots: list[Slot] = []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return None
        for child in statement.nodes:
            if isinstance(child, nodes.TemplateData):
                continue
            slot = _slot(child)
            if slot is not None:
                slots.append(slot)
            elif not _folds(child, eval_context):
                return None
    return slots


def _slot(node: nodes.Node) -> Slot | None:
    if isinstance(node, nodes.Name):
        if node.ctx == "load" and node.name not in _NOT_SLOTS:
            return NameSlot(node.name)
    elif isinstance(node, nodes.Getitem):
        key = node.arg
        if (
            isinstance(node.node, nodes.Name)
            and node.node.name == "custom"
            and isinstance(key, nodes.Const)
            and isinstance(key.value, str)
        ):
            return CustomSlot(key.value)
    elif isinstance(node, nodes.Call):
        function = node.node
        if (
            isinstance(function, nodes.Name)
            and function.name in RECIPIENT_FUNCTIONS
            and len(node.args) == 1
            and not node.kwargs
            and node.dyn_args is None
            and node.dyn_kwargs is None
            and isinstance(node.args[0], nodes.Const)
            and isinstance(node.args[0].value, (str, int))
        ):
            argument = node.args[0].value
            units = call_units((argument,))
            return CallSlot(function.name, argument, units)
    return None


def _folds(node: nodes.Expr, eval_context: nodes.EvalContext) -> bool:
    """Whether Jinja folds the expression to a constant when compiling (it
    asks the same question; an expression that cannot fold is evaluated
    per recipient, which only the Jinja path does)."""
    try:
        node.as_const(eval_context)
    except Exception:  # nodes.Impossible, or an error Jinja defers to render time
        return False
    return True


def _literals(template: Template, slots: list[Slot]) -> tuple[str, ...] | None:
    """The text between the slots, exactly as Jinja outputs it: the template
    rendered once with a unique marker for every slot, split at the markers.
    None when the markers do not come out as the slots in order (then the
    Jinja path is kept: nothing is assumed)."""
    nonce = secrets.token_hex(16)
    keys = list(dict.fromkeys(_key(slot) for slot in slots))
    markers = {key: f"\x00{nonce}:{index}\x00" for index, key in enumerate(keys)}
    # Under a message's own limits: a part whose calls alone exceed the work
    # budget (or a render slowed past the CPU limit) keeps the Jinja path,
    # which is always right, just slower.
    state, token = start_render()
    try:
        output = "".join(template.generate(_marker_variables(slots, markers)))
    except Exception:
        return None
    finally:
        end_render(token)
    pieces = re.split(f"\x00{nonce}:([0-9]+)\x00", output)
    found = [keys[int(index)] for index in pieces[1::2]]
    if found != [_key(slot) for slot in slots] or state.empty_placeholders:
        return None
    return tuple(pieces[0::2])


def _key(slot: Slot) -> tuple[str, object]:
    if isinstance(slot, NameSlot):
        return ("name", slot.name)
    if isinstance(slot, CustomSlot):
        return ("custom", slot.key)
    return (slot.function, slot.argument)


def _marker_variables(
    slots: list[Slot], markers: Mapping[tuple[str, object], str]
) -> dict[str, object]:
    variables: dict[str, object] = {}
    custom = CustomFields()
    for slot in slots:
        if isinstance(slot, NameSlot):
            variables[slot.name] = markers[_key(slot)]
        elif isinstance(slot, CustomSlot):
            custom[slot.key] = markers[_key(slot)]
    variables["custom"] = custom
    for name in RECIPIENT_FUNCTIONS:
        variables[name] = RecipientFunction(functools.partial(_marker_of, markers, name))
    return variables


def _marker_of(markers: Mapping[tuple[str, object], str], function: str, argument: object) -> str:
    return markers.get((function, argument), "")


def _resolve(variables: Mapping[str, object], environment: SluiceEnvironment, name: str) -> object:
    """A name as Jinja's context resolves it: the render's variables, then
    the environment's globals, else a ``RecordingUndefined`` (which records
    the name as an empty placeholder)."""
    try:
        return variables[name]
    except KeyError:
        pass
    if name in environment.globals:
        return environment.globals[name]
    return environment.undefined(name=name)
