"""Templates → one message per recipient (docs/messages.md, "rendering").

Pure: no database, no Flask. Everything expensive happens once per mass email
in ``compile_template``; ``render`` only runs three compiled Jinja templates
(subject, HTML, text) and notes which placeholders came out empty. A part
that only substitutes values (``{{ FIRST_NAME }}``, ``{{ click_url(3) }}`` …)
is rendered by joining its precomputed text and the recipient's values
instead (``rendering_plan``), with exactly the Jinja template's result.

Rules:
- templates are Jinja2 in a sandbox (``rendering_sandbox``): no Python
  objects, no files, no loops without end; a hostile template fails with
  ``TemplateProblem`` when saved or ``RenderError`` when rendered;
- placeholders: ``{{ FIRST_NAME }}``/``{{ first_name }}``, ``LAST_NAME``,
  ``EMAIL``, ``COMPANY``, ``FULL_NAME``, every contact field and every custom
  field whose key is an identifier, in lower and upper case; any custom field
  as ``{{ custom['Key With Space'] }}``. ``opt_out_url``, ``view_online_url``,
  ``open_pixel_url`` (also in upper case), ``tracking_url('name')`` and
  ``click_url(n)`` are Sluice's own and win over contact data of the same
  name. EspoCRM's
  ``{optOutUrl}``, ``{optOutLink}``, ``{trackingUrl:ID}`` and
  ``{Person.firstName}`` are translated;
- contact data is HTML-escaped in the HTML part, never in the subject or the
  text part; CR/LF in the subject is left for composition to refuse;
- a placeholder the recipient has no value for (missing, None, empty or
  blank text) renders empty and is listed in ``empty_placeholders``;
- the layout adds the logo (``header_logo_url``), then the footer:
  ``footer_html``, the company name and postal address (CAN-SPAM: compiling
  is refused while either is empty), and an "Unsubscribe" link unless the
  body or footer references ``opt_out_url`` or the policy makes the link
  optional; the same holds for the text part on its own;
- click tracking rewrites the ``href`` of ``<a>`` tags with static http(s)
  URLs to ``{{ click_url(n) }}`` (``rendering_html``); open tracking adds a
  one-pixel image before ``</body>``; ``<style>`` rules are inlined;
- the text part, when not written, is derived from the HTML after link
  rewriting, so it carries the tracked URLs: ``Read more ({{ click_url(0) }})``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from jinja2 import Environment, Template, meta, nodes
from jinja2.exceptions import TemplateSyntaxError

from app.services.rendering_html import translate_espocrm
from app.services.rendering_layout import Layout, build_sources
from app.services.rendering_plan import RenderPlan, plan_part
from app.services.rendering_sandbox import (
    PUBLIC_FILTERS,
    BudgetTransformer,
    CustomFields,
    RecipientFunction,
    RenderError,
    RenderState,
    SluiceEnvironment,
    end_render,
    html_environment,
    output_too_long,
    start_render,
    text_environment,
)

__all__ = [
    "CompiledTemplate",
    "RecipientContext",
    "RenderError",
    "RenderPolicy",
    "RenderedMessage",
    "TemplateProblem",
    "TemplateSource",
    "compile_template",
    "contact_placeholders",
    "custom_field_placeholder",
    "render",
    "validate_template",
]

MAX_TEMPLATE_LENGTH = 512 * 1024  # characters per field
MAX_OUTPUT_LENGTH = 2_000_000  # characters of one rendered message, all parts

BUILTIN_NAMES = frozenset(
    {"opt_out_url", "view_online_url", "open_pixel_url", "tracking_url", "click_url"}
)
_OPT_OUT_NAMES = frozenset({"opt_out_url", "OPT_OUT_URL"})
# Names contact data can never take: Sluice's own, the custom-field mapping
# and the capped range (in any letter case: {{ OPT_OUT_URL }} is not a
# custom field either).
RESERVED_NAMES = BUILTIN_NAMES | {"custom", "range"}
# Names Jinja itself binds; never placeholders.
_JINJA_NAMES = frozenset({"loop", "self", "caller", "varargs", "kwargs"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# Parses only (never renders): whether a key can be written as a bare name.
_PARSER = Environment(autoescape=True)
_BLANK_LINES = re.compile(r"\n{3,}")
_OBJECT_REPR = re.compile(r"<[^<>]*(?: at 0x[0-9a-fA-F]+|class |module |function |method )[^<>]*>")

_NO_LOADING = "is not supported: a template cannot load files or templates"
_NO_AUTOESCAPE = "{% autoescape %} is not supported: contact data is always escaped in HTML"
_FORBIDDEN_NODES: dict[type[nodes.Node], str] = {
    nodes.Include: f"{{% include %}} {_NO_LOADING}",
    nodes.Extends: f"{{% extends %}} {_NO_LOADING}",
    nodes.Import: f"{{% import %}} {_NO_LOADING}",
    nodes.FromImport: f"{{% from … import %}} {_NO_LOADING}",
    nodes.Block: "{% block %} is not supported: there is no template inheritance",
    nodes.Macro: "{% macro %} is not supported",
    nodes.CallBlock: "{% call %} is not supported",
    nodes.FilterBlock: "{% filter %} blocks are not supported; write {{ value|filter }}",
    nodes.AssignBlock: (
        "{% set %}…{% endset %} blocks are not supported; write {% set name = value %}"
    ),
    nodes.ScopedEvalContextModifier: _NO_AUTOESCAPE,
    nodes.EvalContextModifier: _NO_AUTOESCAPE,
}


@dataclass(frozen=True)
class TemplateSource:
    subject: str
    body_html: str
    body_text: str | None = None  # None → derived from the HTML
    header_logo_url: str = ""  # layout header
    footer_html: str = ""  # layout footer (extra text above the address block)


@dataclass(frozen=True)
class RenderPolicy:
    company_name: str
    postal_address: str
    mandatory_opt_out: bool = True
    open_tracking: bool = False
    click_tracking: bool = True


class TemplateProblem(ValueError):
    """A template that cannot be saved or compiled. ``field`` is
    ``subject``, ``body_html``, ``body_text``, ``footer_html``,
    ``header_logo_url``, ``company_name`` or ``postal_address``; ``line``
    counts from 1 in that field, None when the problem has no line."""

    def __init__(self, field: str, line: int | None, message: str) -> None:
        self.field = field
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.field}: {self.message}"
        return f"{self.field} line {self.line}: {self.message}"


@dataclass(frozen=True, eq=False)
class CompiledTemplate:
    """A mass email's templates, ready to render for each recipient.
    ``links[n]`` is the URL behind ``click_url(n)``; ``has_opt_out_link``
    says the body or layout footer referenced ``opt_out_url`` before one was
    appended; the ``*_source`` fields are the final Jinja sources (for
    inspection and tests). A part with a ``*_plan`` renders through it
    instead of its Jinja template, with the same result (``rendering_plan``;
    None: the part needs Jinja)."""

    subject_template: Template
    html_template: Template
    text_template: Template
    links: tuple[str, ...]
    has_opt_out_link: bool
    placeholder_names: frozenset[str]
    custom_keys: frozenset[str]
    subject_source: str
    html_source: str
    text_source: str
    text_derived: bool
    subject_plan: RenderPlan | None = None
    html_plan: RenderPlan | None = None
    text_plan: RenderPlan | None = None


@dataclass(frozen=True)
class RecipientContext:
    placeholders: Mapping[str, object]
    opt_out_url: str
    view_online_url: str
    open_pixel_url: str
    click_url: Callable[[int], str]  # link id → tracked URL
    tracking_url: Callable[[str], str]  # named tracking URL


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str
    empty_placeholders: frozenset[str]


@dataclass(frozen=True)
class _CheckedTemplate:
    """A field parsed, checked and compiled, with what its source refers to."""

    template: Template
    names: frozenset[str]
    custom_keys: frozenset[str]
    references_opt_out: bool
    plan: RenderPlan | None = None


# ---------------------------------------------------------------- placeholders


def contact_placeholders(
    fields: Mapping[str, object], custom_fields: Mapping[str, object]
) -> dict[str, object]:
    """Placeholder values for one contact.

    Each field is reachable by its name as given, in lower case and in upper
    case, camelCase read as snake_case (``firstName`` → ``first_name``,
    ``FIRST_NAME``). Custom fields whose key is an identifier get the same
    names; contact fields win over custom fields of the same name. Every
    custom field, whatever its key, is ``custom['Key']``. ``FULL_NAME`` is
    first and last name when not given. Names Sluice reserves
    (``opt_out_url``… in any case) are never taken from contact data.
    """
    placeholders: dict[str, object] = {}
    for key, value in custom_fields.items():
        if _IDENTIFIER.fullmatch(key):
            _add_names(placeholders, key, value)
    for key, value in fields.items():
        _add_names(placeholders, key, value)
    if "FULL_NAME" not in placeholders:
        parts = (placeholders.get("FIRST_NAME"), placeholders.get("LAST_NAME"))
        full_name = " ".join(str(part).strip() for part in parts if part not in (None, ""))
        _add_names(placeholders, "full_name", full_name.strip())
    placeholders["custom"] = CustomFields(custom_fields)
    return placeholders


def custom_field_placeholder(key: str, contact_fields: Iterable[str]) -> str:
    """The placeholder a template writes for the custom field ``key``: its
    plain name when ``contact_placeholders`` gives it one that no contact
    field or Sluice name takes (``{{ plan }}``), else ``{{ custom['Key'] }}``.
    Asked of ``contact_placeholders`` itself, so the two cannot disagree."""
    probe = object()
    names = contact_placeholders(dict.fromkeys(contact_fields, ""), {key: probe})
    if names.get(key) is probe and _is_plain_name(key):
        return f"{{{{ {key} }}}}"
    # A Python string literal is a Jinja one: Jinja's lexer reads the same
    # backslash escapes, so any key (quotes, backslashes, newlines) round-trips.
    return f"{{{{ custom[{key!r}] }}}}"


def _is_plain_name(key: str) -> bool:
    """Whether ``{{ key }}`` reads the placeholder ``key`` (``none`` and
    ``true`` are Jinja constants, ``loop`` is Jinja's own)."""
    try:
        tree = _PARSER.parse(f"{{{{ {key} }}}}")
    except TemplateSyntaxError:
        return False
    names, _, _ = _analyse(tree)
    return names == {key}


def _add_names(placeholders: dict[str, object], key: str, value: object) -> None:
    snake_case = _CAMEL_HUMP.sub("_", key)
    for name in (key, snake_case.lower(), snake_case.upper()):
        if name.lower() not in RESERVED_NAMES:
            placeholders[name] = value


# ------------------------------------------------------------------ validation


def validate_template(source: TemplateSource) -> list[TemplateProblem]:
    """Every problem that stops the template being saved, each with its
    field and, where there is one, its line: size over ``MAX_TEMPLATE_LENGTH``,
    Jinja syntax errors, unsupported tags and filters, assignments to
    Sluice's names, nesting too deep to compile, a logo that is not an
    http(s) URL. An empty list means the template can be compiled."""
    problems: list[TemplateProblem] = []
    for field, text, environment in _fields(source):
        try:
            _check_and_compile(field, text, environment, html_field=field != "subject")
        except TemplateProblem as problem:
            problems.append(problem)
    if source.header_logo_url and not _is_web_url(source.header_logo_url.strip()):
        problems.append(
            TemplateProblem("header_logo_url", None, "the logo must be an http:// or https:// URL")
        )
    return problems


def _fields(source: TemplateSource) -> Iterator[tuple[str, str, SluiceEnvironment]]:
    yield "subject", source.subject, text_environment()
    yield "body_html", source.body_html, html_environment()
    if source.body_text is not None:
        yield "body_text", source.body_text, text_environment()
    yield "footer_html", source.footer_html, html_environment()


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _check_and_compile(
    field: str,
    source: str,
    environment: SluiceEnvironment,
    *,
    html_field: bool,
    limit_size: bool = True,
    translate: bool = True,
    plan: bool = False,
) -> _CheckedTemplate:
    """Parse, check and compile one field; raise ``TemplateProblem``.
    With ``plan``, also its render plan when it has one (only worth it for
    a template that will be rendered: validation skips it).

    Deep nesting makes Jinja's recursive parser, its code generator or
    Python's compiler give up (RecursionError, MemoryError, SyntaxError
    "too many statically nested blocks"): reported, never raised."""
    if limit_size and len(source) > MAX_TEMPLATE_LENGTH:
        raise TemplateProblem(
            field, None, f"longer than {MAX_TEMPLATE_LENGTH:,} characters ({len(source):,})"
        )
    text = translate_espocrm(source, html_field=html_field) if translate else source
    try:
        tree = environment.parse(text)
        _check_tree(field, tree)
        checked = _analyse(tree)
        tree = BudgetTransformer().visit(tree)
        code = environment.compile(tree)
        template = environment.template_class.from_code(
            environment, code, environment.make_globals(None), None
        )
    except TemplateSyntaxError as error:
        raise TemplateProblem(field, error.lineno, error.message or "syntax error") from None
    except (RecursionError, MemoryError, SyntaxError):
        raise TemplateProblem(
            field, None, "expressions or blocks are nested too deeply to compile"
        ) from None
    except (ValueError, OverflowError) as error:  # e.g. an integer literal of 5,000 digits
        if isinstance(error, TemplateProblem):
            raise
        reason = str(error).split(";")[0]  # not Python's advice on sys settings
        raise TemplateProblem(field, None, f"cannot be compiled: {reason}") from None
    render_plan = plan_part(tree, template, environment) if plan else None
    return _CheckedTemplate(template, *checked, plan=render_plan)


def _walk(tree: nodes.Node) -> Iterator[nodes.Node]:
    """Every node, without recursion (a deep tree must not exhaust the stack)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.iter_child_nodes())


def _check_tree(field: str, tree: nodes.Template) -> None:
    for node in _walk(tree):
        message = _FORBIDDEN_NODES.get(type(node))
        if isinstance(node, nodes.For) and node.recursive:
            message = "recursive loops are not supported"
        elif isinstance(node, nodes.Filter) and node.name not in PUBLIC_FILTERS:
            message = (
                f"the filter {node.name!r} is not available "
                f"(available: {', '.join(PUBLIC_FILTERS)})"
            )
        elif (
            isinstance(node, nodes.Name)
            and node.ctx != "load"
            and node.name.lower() in RESERVED_NAMES
        ):
            message = f"{node.name!r} is set by Sluice and cannot be assigned"
        if message is not None:
            raise TemplateProblem(field, node.lineno, message)


def _analyse(tree: nodes.Template) -> tuple[frozenset[str], frozenset[str], bool]:
    """Placeholder names the template reads, ``custom['…']`` keys it reads
    with a constant key, and whether it references ``opt_out_url``."""
    names = {
        name
        for name in meta.find_undeclared_variables(tree)
        if name.lower() not in RESERVED_NAMES and name not in _JINJA_NAMES
    }
    custom_keys: set[str] = set()
    references_opt_out = False
    for node in _walk(tree):
        if isinstance(node, nodes.Name) and node.name in _OPT_OUT_NAMES and node.ctx == "load":
            references_opt_out = True
        elif isinstance(node, (nodes.Getitem, nodes.Getattr)) and _is_custom(node.node):
            key = node.arg if isinstance(node, nodes.Getitem) else nodes.Const(node.attr)
            if isinstance(key, nodes.Const) and isinstance(key.value, str):
                custom_keys.add(key.value)
    return frozenset(names), frozenset(custom_keys), references_opt_out


def _is_custom(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "custom"


# ------------------------------------------------------------------- compiling


def compile_template(source: TemplateSource, policy: RenderPolicy) -> CompiledTemplate:
    """Compile a mass email's templates once (see the module's rules).

    Raises ``TemplateProblem``: the first problem ``validate_template``
    finds, an empty company name or postal address (CAN-SPAM: sending is
    refused), or a plain-text part that cannot be derived from the HTML."""
    problems = validate_template(source) + _policy_problems(policy)
    if problems:
        raise problems[0]
    subject = translate_espocrm(source.subject, html_field=False)
    body = translate_espocrm(source.body_html, html_field=True)
    footer = translate_espocrm(source.footer_html, html_field=True)
    # A blank written text part (an empty form field) counts as absent.
    text = source.body_text if source.body_text and source.body_text.strip() else None
    if text is not None:
        text = translate_espocrm(text, html_field=False)
    # "Has an opt-out link" = refers to opt_out_url, in each part on its own;
    # the layout footer is part of both.
    html_has_opt_out = _references_opt_out(body) or _references_opt_out(footer)
    text_has_opt_out = html_has_opt_out
    if text is not None:
        text_has_opt_out = _references_opt_out(text) or _references_opt_out(footer)
    layout = Layout(
        company_name=policy.company_name,
        postal_address=policy.postal_address,
        logo_url=source.header_logo_url,
        click_tracking=policy.click_tracking,
        open_tracking=policy.open_tracking,
        html_opt_out=policy.mandatory_opt_out and not html_has_opt_out,
        text_opt_out=policy.mandatory_opt_out and not text_has_opt_out,
    )
    sources = build_sources(body, footer, text, layout)
    parts = (
        _check_and_compile(
            "subject", subject, text_environment(), html_field=False, translate=False, plan=True
        ),
        _check_and_compile(
            "body_html",
            sources.html,
            html_environment(),
            html_field=True,
            limit_size=False,
            translate=False,
            plan=True,
        ),
        _compile_text(sources.text, derived=text is None),
    )
    return CompiledTemplate(
        subject_template=parts[0].template,
        html_template=parts[1].template,
        text_template=parts[2].template,
        links=sources.links,
        has_opt_out_link=html_has_opt_out,
        placeholder_names=frozenset().union(*(part.names for part in parts)),
        custom_keys=frozenset().union(*(part.custom_keys for part in parts)),
        subject_source=subject,
        html_source=sources.html,
        text_source=sources.text,
        text_derived=text is None,
        subject_plan=parts[0].plan,
        html_plan=parts[1].plan,
        text_plan=parts[2].plan,
    )


def _policy_problems(policy: RenderPolicy) -> list[TemplateProblem]:
    problems = []
    if not policy.company_name.strip():
        problems.append(
            TemplateProblem(
                "company_name", None, "the company name for the footer is empty (CAN-SPAM)"
            )
        )
    if not policy.postal_address.strip():
        problems.append(
            TemplateProblem(
                "postal_address", None, "the postal address for the footer is empty (CAN-SPAM)"
            )
        )
    return problems


def _references_opt_out(source: str) -> bool:
    """The (valid, translated) source refers to ``opt_out_url``."""
    tree = html_environment().parse(source)
    return any(
        isinstance(node, nodes.Name) and node.name in _OPT_OUT_NAMES and node.ctx == "load"
        for node in _walk(tree)
    )


def _compile_text(text_source: str, *, derived: bool) -> _CheckedTemplate:
    try:
        return _check_and_compile(
            "body_text",
            text_source,
            text_environment(),
            html_field=False,
            limit_size=False,
            translate=False,
            plan=True,
        )
    except TemplateProblem as problem:
        if not derived:
            raise
        raise TemplateProblem(
            "body_text",
            None,
            f"the plain-text part derived from the HTML is not a valid template "
            f"({problem.message}); write a plain-text part",
        ) from None


# ------------------------------------------------------------------- rendering


def render(compiled: CompiledTemplate, recipient: RecipientContext) -> RenderedMessage:
    """One recipient's message. Raises ``RenderError`` (naming the part)
    when the template fails or exceeds a limit: ``MAX_OUTPUT_LENGTH``
    characters in all, or the sandbox's work and CPU budget."""
    variables = dict(recipient.placeholders)
    variables.update(
        opt_out_url=recipient.opt_out_url,
        view_online_url=recipient.view_online_url,
        open_pixel_url=recipient.open_pixel_url,
        OPT_OUT_URL=recipient.opt_out_url,
        VIEW_ONLINE_URL=recipient.view_online_url,
        OPEN_PIXEL_URL=recipient.open_pixel_url,
        click_url=RecipientFunction(recipient.click_url),
        tracking_url=RecipientFunction(recipient.tracking_url),
    )
    state, token = start_render()
    try:
        subject = _generate(
            compiled.subject_template, compiled.subject_plan, variables, state, "subject"
        )
        html = _generate(compiled.html_template, compiled.html_plan, variables, state, "html")
        text = _generate(compiled.text_template, compiled.text_plan, variables, state, "text")
    finally:
        end_render(token)
    if compiled.text_derived and "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)  # left by {% if %} lines of the HTML
    empty = _empty_placeholders(compiled, recipient.placeholders, state)
    return RenderedMessage(subject=subject, html=html, text=text, empty_placeholders=empty)


def _generate(
    template: Template,
    plan: RenderPlan | None,
    variables: dict[str, object],
    state: RenderState,
    part: str,
) -> str:
    """Render through the part's plan when it has one, else stream Jinja's
    output, counting it so an over-long message stops at
    ``MAX_OUTPUT_LENGTH`` instead of filling memory. Both paths share the
    error messages."""
    try:
        if plan is not None:
            return plan.render(variables, state, MAX_OUTPUT_LENGTH)
        chunks: list[str] = []
        for chunk in template.generate(variables):
            state.output += len(chunk)
            if state.output > MAX_OUTPUT_LENGTH:
                raise output_too_long(MAX_OUTPUT_LENGTH)
            chunks.append(chunk)
    except RecursionError:
        raise RenderError(f"{part}: nested too deeply") from None
    except MemoryError:
        raise RenderError(f"{part}: out of memory") from None
    except Exception as error:
        message = _OBJECT_REPR.sub("<object>", str(error)) or type(error).__name__
        raise RenderError(f"{part}: {message}") from None
    return "".join(chunks)


def _empty_placeholders(
    compiled: CompiledTemplate, placeholders: Mapping[str, object], state: RenderState
) -> frozenset[str]:
    empty = set(state.empty_placeholders)
    for name in compiled.placeholder_names:
        if _is_empty(placeholders.get(name)):
            empty.add(name)
    custom = placeholders.get("custom")
    for key in compiled.custom_keys:
        value = custom.get(key) if isinstance(custom, Mapping) else None
        if _is_empty(value):
            empty.add(f"custom[{key!r}]")
    return frozenset(empty)


def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, (list, tuple, dict)) and not value
