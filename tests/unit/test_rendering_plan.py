"""The render plan (``rendering_plan``): a part that only substitutes values
renders by joining precomputed text and the recipient's values, and the
result — message, empty placeholders, errors, link signing — is the Jinja
path's, for every template and every recipient."""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.services import rendering_sandbox
from app.services.rendering import (
    MAX_OUTPUT_LENGTH,
    CompiledTemplate,
    RecipientContext,
    RenderedMessage,
    RenderError,
    RenderPolicy,
    TemplateSource,
    compile_template,
    contact_placeholders,
    render,
)
from app.services.rendering_sandbox import CALL_WEIGHT, MAX_WORK

POLICY = RenderPolicy(company_name="Acme & Sons <Ltd>", postal_address="1 Main St\nSpringfield")
OPEN_TRACKING = dataclasses.replace(POLICY, open_tracking=True)
TOO_LONG = f"RenderError: html: the message is longer than {MAX_OUTPUT_LENGTH:,} characters"


class Links:
    """The recipient's link functions, noting every call: signing a token is
    the costly part, so both paths must sign the same links, once each."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def click_url(self, link_id: int) -> str:
        self.calls.append(("click", link_id))
        return f"https://mail.example.com/t/c/{link_id}?a=1&b='2'"

    def tracking_url(self, name: str) -> str:
        self.calls.append(("tracking", name))
        return "" if name == "unknown" else f"https://mail.example.com/t/n/{name}?x=<y>"


def recipient(
    links: Links, fields: Mapping[str, object], custom: Mapping[str, object]
) -> RecipientContext:
    return RecipientContext(
        placeholders=contact_placeholders(fields, custom),
        opt_out_url="https://mail.example.com/u/OPT?a=1&b=2",
        view_online_url="https://mail.example.com/v/VIEW",
        open_pixel_url="https://mail.example.com/t/o/PIXEL.gif",
        click_url=links.click_url,
        tracking_url=links.tracking_url,
    )


def jinja_only(compiled: CompiledTemplate) -> CompiledTemplate:
    """The same compiled template without its plans: every part through Jinja."""
    return dataclasses.replace(compiled, subject_plan=None, html_plan=None, text_plan=None)


def both_paths(
    compiled: CompiledTemplate, fields: Mapping[str, object], custom: Mapping[str, object]
) -> tuple[tuple[RenderedMessage | str, list[tuple[str, object]]], ...]:
    """Each path's message (or error text) and the link functions' calls."""
    outcomes = []
    for candidate in (compiled, jinja_only(compiled)):
        links = Links()
        outcome: RenderedMessage | str
        try:
            outcome = render(candidate, recipient(links, fields, custom))
        except RenderError as error:
            outcome = f"RenderError: {error}"
        outcomes.append((outcome, links.calls))
    return tuple(outcomes)


def assert_same_on_both_paths(
    compiled: CompiledTemplate, fields: Mapping[str, object], custom: Mapping[str, object]
) -> RenderedMessage | str:
    (planned, planned_calls), (jinja, jinja_calls) = both_paths(compiled, fields, custom)
    assert planned == jinja
    assert planned_calls == jinja_calls
    return planned


def planned(compiled: CompiledTemplate) -> tuple[bool, bool, bool]:
    return (
        compiled.subject_plan is not None,
        compiled.html_plan is not None,
        compiled.text_plan is not None,
    )


# ------------------------------------------------------------ generated cases

# Literal text with what escaping, Jinja and the HTML tools care about. A "{"
# that would open Jinja syntax ({{ {% {#) or end right before a placeholder is
# spaced out: the literal must stay literal.
LITERAL = st.text(
    alphabet=st.sampled_from([*"ab <>&'\"{}%#\n\r\t=/;é€😀\u00a0\u2028\x00"]),
    max_size=25,
).map(lambda text: re.sub(r"\{(?=[{%#]|$)", "{ ", text))
# Custom keys as marketers write them: spaces, quotes, backslashes, unicode,
# names that collide with mapping methods or look like Python internals.
CUSTOM_KEY = st.one_of(
    st.sampled_from(["Plan", "Favourite colour", "it's", 'say "hi"', "back\\slash", "é-ü"]),
    st.sampled_from(["get", "items", "keys", "values", "__class__", "_private", "", " "]),
    st.text(max_size=8),
)
NAMES = ["FIRST_NAME", "first_name", "LAST_NAME", "EMAIL", "COMPANY", "FULL_NAME", "PLAN"]
NAMES += ["MISSING_FIELD", "opt_out_url", "OPT_OUT_URL", "view_online_url", "open_pixel_url"]
# Sluice's names in another letter case: never contact data, and not bound
# either, so only the render itself records them as empty.
NAMES += ["Opt_Out_Url", "CLICK_URL", "CUSTOM", "Range"]
PLACEHOLDER = st.one_of(
    st.sampled_from(NAMES).map(lambda name: f"{{{{ {name} }}}}"),
    CUSTOM_KEY.map(lambda key: f"{{{{ custom[{key!r}] }}}}"),
    st.integers(0, 12).map(lambda link: f"{{{{ click_url({link}) }}}}"),
    st.sampled_from(["news", "unknown", "a b&c"]).map(
        lambda name: f"{{{{ tracking_url({name!r}) }}}}"
    ),
    # Constant expressions Jinja folds while compiling.
    st.sampled_from(["{{ '{' }}", "{{ 3 }}", "{{ none }}", "{{ '<b>&' }}", "{{ (1, 'x') }}"]),
    st.sampled_from(["{{ [1, 2]|join('<') }}", "{{ 'x'|upper }}", "{{-' trim '-}}"]),
    st.just("{# a comment #}"),
)
TEMPLATE = st.lists(st.one_of(LITERAL, PLACEHOLDER), max_size=12).map("".join)
VALUE = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "\t\n", "<script>alert('x')</script>", "a & b", '"quoted"']),
    st.sampled_from(["{{ 7 * 7 }}", "{% if %}", "Ann\r\nBcc: x@example.com", "\x00"]),
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.dates(),
    st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
    st.text(alphabet="<&>x", min_size=500, max_size=3000),
)
# Values that cannot be output: both paths must fail with the same error.
BAD_VALUE = st.sampled_from([{"a": 1}, [{"a": 1}], object()])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=TEMPLATE,
    body=TEMPLATE,
    text=st.none() | TEMPLATE,
    footer=TEMPLATE,
    open_tracking=st.booleans(),
    fields=st.dictionaries(
        st.sampled_from(["first_name", "last_name", "email", "company", "FULL_NAME"]), VALUE
    ),
    custom=st.dictionaries(st.one_of(CUSTOM_KEY, st.just("PLAN")), VALUE),
)
def test_a_planned_template_renders_as_jinja_does(
    subject: str,
    body: str,
    text: str | None,
    footer: str,
    open_tracking: bool,
    fields: dict[str, object],
    custom: dict[str, object],
) -> None:
    compiled = compile_template(
        TemplateSource(subject=subject, body_html=body, body_text=text, footer_html=footer),
        OPEN_TRACKING if open_tracking else POLICY,
    )
    assert planned(compiled) == (True, True, True), (compiled.html_source, compiled.text_source)
    assert_same_on_both_paths(compiled, fields, custom)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=TEMPLATE, name=st.sampled_from(["first_name", "company"]), bad=BAD_VALUE, key=CUSTOM_KEY
)
def test_a_value_that_cannot_be_output_fails_the_same_way(
    body: str, name: str, bad: object, key: str
) -> None:
    source = f"{body}{{{{ {name.upper()} }}}}{{{{ custom[{key!r}] }}}}{body}"
    compiled = compile_template(TemplateSource(subject="Hi", body_html=source), POLICY)
    assert compiled.html_plan is not None
    outcome = assert_same_on_both_paths(compiled, {name: bad}, {key: bad})
    # The bad value's error, or an earlier one of the body's own
    # (custom['__class__'] without such a field): the HTML part fails.
    assert isinstance(outcome, str)
    assert outcome.startswith("RenderError: html: ")


# ---------------------------------------------------------------- worked cases


def test_values_are_escaped_in_html_only_and_links_signed_once() -> None:
    compiled = compile_template(
        TemplateSource(
            subject="{{ FIRST_NAME }} & {{ custom['Plan'] }}",
            body_html=(
                '<p>Hi {{ FIRST_NAME }}, your plan: {{ custom["Plan"] }}.</p>'
                '<a href="https://www.example.com/a?x=1&y=2">Read</a>'
                "<a href=\"{{ tracking_url('news') }}\">News</a>"
            ),
        ),
        POLICY,
    )
    assert planned(compiled) == (True, True, True)
    (message, calls), _ = both_paths(compiled, {"first_name": "<Ann & Bo>"}, {"Plan": "'Pro'"})
    assert isinstance(message, RenderedMessage)
    assert message.subject == "<Ann & Bo> & 'Pro'"
    assert "<p>Hi &lt;Ann &amp; Bo&gt;, your plan: &#39;Pro&#39;.</p>" in message.html
    assert "https://mail.example.com/t/c/0?a=1&amp;b=&#39;2&#39;" in message.html
    assert "https://mail.example.com/t/n/news?x=&lt;y&gt;" in message.html
    assert "https://mail.example.com/t/c/0?a=1&b='2'" in message.text
    # The HTML and the text part output each link; each is signed once.
    assert calls == [("click", 0), ("tracking", "news")]
    assert_same_on_both_paths(compiled, {"first_name": "<Ann & Bo>"}, {"Plan": "'Pro'"})


def test_empty_placeholders_are_the_same_on_both_paths() -> None:
    compiled = compile_template(
        TemplateSource(
            subject="{{ FIRST_NAME }}",
            body_html="{{ COMPANY }} {{ NICKNAME }} {{ custom['Plan'] }} {{ custom['Gone'] }}",
            body_text="{{ LAST_NAME }}",
        ),
        POLICY,
    )
    assert planned(compiled) == (True, True, True)
    message = assert_same_on_both_paths(
        compiled, {"first_name": " ", "last_name": None, "company": "Initech"}, {"Plan": ""}
    )
    assert isinstance(message, RenderedMessage)
    assert message.empty_placeholders == {
        "FIRST_NAME",
        "LAST_NAME",
        "NICKNAME",
        "custom['Plan']",
        "custom['Gone']",
    }


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("get", "cannot output a value of type 'builtin_function_or_method'"),
        ("__class__", "access to attribute '__class__' of 'CustomFields' object is unsafe."),
    ],
)
def test_a_custom_key_naming_a_method_fails_as_in_jinja(key: str, error: str) -> None:
    compiled = compile_template(
        TemplateSource(subject="s", body_html=f"{{{{ custom[{key!r}] }}}}"), POLICY
    )
    assert compiled.html_plan is not None
    assert assert_same_on_both_paths(compiled, {}, {}) == f"RenderError: html: {error}"
    # A custom field of that name is output like any other.
    message = assert_same_on_both_paths(compiled, {}, {key: "value"})
    assert isinstance(message, RenderedMessage)
    assert "value" in message.html


def test_the_output_limit_holds_on_both_paths() -> None:
    compiled = compile_template(
        TemplateSource(subject="s", body_html="<p>{{ FIRST_NAME }}{{ LAST_NAME }}</p>"), POLICY
    )
    assert compiled.html_plan is not None
    half = "x" * (MAX_OUTPUT_LENGTH // 2)
    outcome = assert_same_on_both_paths(compiled, {"first_name": half, "last_name": half}, {})
    assert outcome == TOO_LONG


def test_past_the_output_limit_a_failing_value_is_never_reached() -> None:
    """Jinja stops at the first chunk past the limit, so the value after it
    is never output: the error is the length, on both paths."""
    compiled = compile_template(
        TemplateSource(subject="s", body_html="{{ FIRST_NAME }}{{ LAST_NAME }}{{ custom['Bad'] }}"),
        POLICY,
    )
    assert compiled.html_plan is not None
    half = "x" * (MAX_OUTPUT_LENGTH // 2 + 1)
    fields = {"first_name": half, "last_name": half}
    outcome = assert_same_on_both_paths(compiled, fields, {"Bad": {"a": 1}})
    assert outcome == TOO_LONG
    # Within the limit, the value's own error.
    outcome = assert_same_on_both_paths(compiled, {"first_name": "x"}, {"Bad": {"a": 1}})
    assert outcome == "RenderError: html: cannot output a value of type 'dict'"


def test_a_failing_value_before_the_text_that_passes_the_limit_is_its_own_error() -> None:
    """The limit is passed only by the text after the failing value: Jinja
    never gets there, so the error is the value's."""
    compiled = compile_template(
        TemplateSource(
            subject="s", body_html="{{ FIRST_NAME }}{{ custom['Bad'] }}" + "y" * 500_000
        ),
        POLICY,
    )
    assert compiled.html_plan is not None
    fields = {"first_name": "x" * (MAX_OUTPUT_LENGTH - 400_000)}
    outcome = assert_same_on_both_paths(compiled, fields, {"Bad": {"a": 1}})
    assert outcome == "RenderError: html: cannot output a value of type 'dict'"
    outcome = assert_same_on_both_paths(compiled, fields, {"Bad": "fine"})
    assert outcome == TOO_LONG


def test_link_calls_are_charged_to_the_work_budget_on_both_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each part alone stays within the budget (so each is planned); the
    HTML and the text part derived from it together do not. The CPU-time
    limit is raised out of the way: on a busy machine the Jinja path's
    125,000 calls can pass 0.1 s of CPU before the work count trips, and
    this test is about the work count."""
    monkeypatch.setattr(rendering_sandbox, "MAX_RENDER_CPU_SECONDS", 60.0)
    calls = (MAX_WORK // (CALL_WEIGHT + 1)) // 2 + 100
    compiled = compile_template(
        TemplateSource(subject="s", body_html="{{ click_url(1) }} " * calls), POLICY
    )
    assert planned(compiled) == (True, True, True)
    outcome = assert_same_on_both_paths(compiled, {}, {})
    assert outcome == (
        "RenderError: text: the template does too much work for one message "
        f"(over {MAX_WORK:,} steps: a loop runs too often)"
    )


@pytest.mark.parametrize(
    "body",
    [
        "{% if FIRST_NAME %}Hi {{ FIRST_NAME }}{% else %}Hi there{% endif %}",
        "{{ FIRST_NAME|upper }}",
        "{{ FIRST_NAME|default('friend') }}",
        "{% for key, value in custom.items() %}{{ key }}={{ value }};{% endfor %}",
        "{{ custom.Plan }}",
        "{{ custom['Plan'].upper() }}",
        "{{ FIRST_NAME ~ '!' }}",
        "{{ FIRST_NAME or 'friend' }}",
        "{% set name = FIRST_NAME %}{{ name }}",
        "{{ click_url(1, 2) }}",
        "{{ click_url(LINK) }}",
        "{{ custom[KEY] }}",
        "{{ range }}",
        "{{ click_url }}",
        "{{ custom }}",
        "{{ 1 + 2 }}",
    ],
)
def test_templates_that_need_jinja_keep_the_jinja_path(body: str) -> None:
    compiled = compile_template(
        TemplateSource(subject="{{ FIRST_NAME }}", body_html=body, body_text=body), POLICY
    )
    assert planned(compiled) == (True, False, False)
    fields = {"first_name": "Ann"}
    custom = {"Plan": "pro", "LINK": 2, "KEY": "Plan"}
    assert_same_on_both_paths(compiled, fields, custom)


def test_a_loop_without_end_still_fails_fast_beside_a_planned_subject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The work count, not the CPU-time backstop, must stop both renders,
    # or a busy machine could stop them with different errors.
    monkeypatch.setattr(rendering_sandbox, "MAX_RENDER_CPU_SECONDS", 60.0)
    compiled = compile_template(
        TemplateSource(
            subject="Hi {{ FIRST_NAME }}",
            body_html=(
                "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}"
            ),
        ),
        POLICY,
    )
    # The text part derived from the HTML keeps the loop.
    assert planned(compiled) == (True, False, False)
    outcome = assert_same_on_both_paths(compiled, {"first_name": "Ann"}, {})
    assert isinstance(outcome, str)
    assert "does too much work" in outcome


def test_dates_numbers_and_lists_are_output_as_in_jinja() -> None:
    compiled = compile_template(
        TemplateSource(
            subject="{{ custom['Since'] }} {{ custom['Score'] }}",
            body_html="<p>{{ custom['Tags'] }} {{ custom['Ratio'] }} {{ custom['Ok'] }}</p>",
        ),
        POLICY,
    )
    assert planned(compiled) == (True, True, True)
    custom = {
        "Since": datetime.date(2026, 3, 2),
        "Score": 42,
        "Tags": ["<a>", 1, "b&c"],
        "Ratio": 0.5,
        "Ok": True,
    }
    message = assert_same_on_both_paths(compiled, {}, custom)
    assert isinstance(message, RenderedMessage)
    assert message.subject == "2026-03-02 42"
    assert "<p>&lt;a&gt;, 1, b&amp;c 0.5 True</p>" in message.html
