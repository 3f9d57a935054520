"""The rendering sandbox: known server-side template injection payloads,
resource limits, hostile loops, and random contact data."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from app.services import rendering_sandbox
from app.services.rendering import (
    MAX_OUTPUT_LENGTH,
    CompiledTemplate,
    RecipientContext,
    RenderError,
    RenderPolicy,
    TemplateProblem,
    TemplateSource,
    compile_template,
    contact_placeholders,
    render,
    validate_template,
)
from app.services.rendering_sandbox import MAX_RANGE, MAX_WORK

# A template that escaped the sandbox could reach this through the globals of
# click_url (defined in this module) or through os.environ.
SECRET = "sluice-module-secret-5b0f2c"
ENVIRONMENT_SECRET = "sluice-environment-secret-91d7e4"
PAYLOADS = [
    line
    for line in (Path(__file__).parent / "ssti_payloads.txt").read_text("utf-8").splitlines()
    if line.strip() and not line.startswith("#")
]
# What a Python object's repr starts with, and a line of /etc/passwd.
LEAK_SIGNS = (
    SECRET,
    ENVIRONMENT_SECRET,
    "<class",
    "<module",
    "<function",
    "<built-in",
    "<bound method",
    "<method",
    "<jinja2",
    "<Template",
    "<Environment",
    "root:x:0:0",
    "uid=",
)
POLICY = RenderPolicy(company_name="Acme", postal_address="1 Main St, Springfield")
SECONDS_PER_PAYLOAD = 2.0


def click_url(link_id: int) -> str:
    return f"https://mail.example.com/t/c/{link_id}"


def tracking_url(name: str) -> str:
    return f"https://mail.example.com/t/n/{name}"


def recipient(
    first_name: object = "Ann", custom: Mapping[str, object] | None = None
) -> RecipientContext:
    return RecipientContext(
        placeholders=contact_placeholders(
            {"first_name": first_name, "last_name": "Lee", "email": "ann@example.com"},
            custom or {"Tier": "gold"},
        ),
        opt_out_url="https://mail.example.com/u/tok",
        view_online_url="https://mail.example.com/v/tok",
        open_pixel_url="https://mail.example.com/t/o/tok.gif",
        click_url=click_url,
        tracking_url=tracking_url,
    )


@pytest.fixture(autouse=True)
def _environment_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_SSTI_CANARY", ENVIRONMENT_SECRET)


def assert_no_leak(text: str) -> None:
    for sign in LEAK_SIGNS:
        assert sign not in text, f"{sign!r} in {text[:300]!r}"


def outcome(source: TemplateSource) -> str:
    """Refused, failed or rendered: what the payload came to, checked for
    leaks on every path."""
    problems = validate_template(source)
    if problems:
        assert_no_leak(" ".join(str(problem) for problem in problems))
        return "refused"
    try:
        compiled = compile_template(source, POLICY)
        message = render(compiled, recipient())
    except (TemplateProblem, RenderError) as error:
        assert_no_leak(str(error))
        return "failed"
    for part in (message.subject, message.html, message.text):
        assert_no_leak(part)
    return "rendered"


def test_the_corpus_holds_at_least_40_payloads() -> None:
    assert len(PAYLOADS) >= 40


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_in_the_html_body_is_contained(payload: str) -> None:
    started = time.perf_counter()
    outcome(TemplateSource(subject="Hello", body_html=f"<p>{payload}</p>"))
    assert time.perf_counter() - started < SECONDS_PER_PAYLOAD


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_in_the_subject_and_text_is_contained(payload: str) -> None:
    started = time.perf_counter()
    outcome(TemplateSource(subject=payload, body_html="<p>Hi</p>", body_text=payload))
    assert time.perf_counter() - started < SECONDS_PER_PAYLOAD


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ click_url.__call__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(FIRST_NAME) }}",
        "{{ FIRST_NAME.ljust(10) }}",
        "{{ click_url }}",
        "{{ self }}",
        "{{ custom }}",
    ],
)
def test_reaching_for_python_objects_fails_with_a_clear_error(payload: str) -> None:
    compiled = compile_template(TemplateSource(subject="s", body_html=payload), POLICY)
    with pytest.raises(RenderError, match=r"^html: .*(unsafe|cannot output)"):
        render(compiled, recipient())


@pytest.mark.parametrize(
    "name",
    ["config", "request", "lipsum", "cycler", "joiner", "namespace", "dict", "os", "SECRET"],
)
def test_names_outside_the_template_render_empty_and_are_reported(name: str) -> None:
    compiled = compile_template(
        TemplateSource(subject="s", body_html=f"[{{{{ {name} }}}}]"), POLICY
    )
    message = render(compiled, recipient())
    assert "[]" in message.html
    assert name in message.empty_placeholders


@pytest.mark.parametrize("name", ["cycler", "joiner", "namespace", "lipsum", "dict"])
def test_jinja_global_helpers_are_not_callable(name: str) -> None:
    compiled = compile_template(
        TemplateSource(subject="s", body_html=f"{{{{ {name}() }}}}"), POLICY
    )
    with pytest.raises(RenderError, match="undefined"):
        render(compiled, recipient())


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{% include '/etc/passwd' %}", "include"),
        ("{% extends 'base.html' %}", "extends"),
        ("{% import 'os' as os %}", "import"),
        ("{% from 'os' import popen %}", "import"),
        ("{% macro m() %}{% endmacro %}", "macro"),
        ("{% filter upper %}x{% endfilter %}", "filter"),
        ("{% set x %}y{% endset %}", "endset"),
        ("{% block b %}{% endblock %}", "block"),
        ("{% autoescape false %}x{% endautoescape %}", "autoescape"),
        ("{% for x in [] recursive %}{% endfor %}", "recursive"),
        ("{{ x|safe }}", "'safe' is not available"),
        ("{{ x|format(1) }}", "'format' is not available"),
        ("{% set opt_out_url = '#' %}", "'opt_out_url' is set by Sluice"),
        ("{% set Click_Url = '#' %}", "set by Sluice"),
    ],
)
def test_unsupported_tags_are_refused_at_validation(payload: str, message: str) -> None:
    body = "<p>first line</p>\n" + payload
    problems = validate_template(TemplateSource(subject="s", body_html=body))
    assert [problem.field for problem in problems] == ["body_html"]
    assert problems[0].line == 2
    assert message in problems[0].message


def test_range_is_capped() -> None:
    compiled = compile_template(
        TemplateSource(subject="s", body_html=f"{{{{ range({MAX_RANGE})|length }}}}"), POLICY
    )
    assert f">{MAX_RANGE}<" in render(compiled, recipient()).html.replace("<body>", ">")
    too_long = compile_template(
        TemplateSource(
            subject="s", body_html=f"{{% for i in range({MAX_RANGE + 1}) %}}{{% endfor %}}"
        ),
        POLICY,
    )
    with pytest.raises(RenderError, match="range"):
        render(too_long, recipient())


def test_a_loop_that_would_run_for_minutes_fails_fast() -> None:
    """A billion iterations over capped ranges: stopped by the work budget."""
    hostile = (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
        "{% if a == b %}{% endif %}{% endfor %}{% endfor %}{% endfor %}"
    )
    compiled = compile_template(TemplateSource(subject="s", body_html=hostile), POLICY)
    started = time.perf_counter()
    with pytest.raises(RenderError, match="too much work"):
        render(compiled, recipient())
    assert time.perf_counter() - started < 2.0


def test_a_loop_body_of_thousands_of_statements_counts_each_statement() -> None:
    body_statements = "{% if FIRST_NAME == 'x' %}{% endif %}" * 300
    hostile = f"{{% for a in range(1000) %}}{body_statements}{{% endfor %}}"
    compiled = compile_template(TemplateSource(subject="s", body_html=hostile), POLICY)
    started = time.perf_counter()
    with pytest.raises(RenderError, match="too much work"):
        render(compiled, recipient())
    assert time.perf_counter() - started < 2.0


def test_cpu_time_is_the_backstop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work the budget units undercount still stops at the CPU-time limit."""
    monkeypatch.setattr(rendering_sandbox, "MAX_RENDER_CPU_SECONDS", 0.0)
    loop = "{% for a in range(1000) %}{% for b in range(10) %}{% endfor %}{% endfor %}"
    compiled = compile_template(TemplateSource(subject="s", body_html=loop), POLICY)
    with pytest.raises(RenderError, match=r"took longer than 0\.0 s"):
        render(compiled, recipient())


def test_a_legitimate_loop_stays_within_the_budget() -> None:
    rows = (
        "{% for i in range(1000) %}"
        "<tr><td>{{ i }}</td><td>{{ FIRST_NAME|upper }}</td></tr>{% endfor %}"
    )
    compiled = compile_template(
        TemplateSource(subject="s", body_html=f"<table>{rows}</table>"), POLICY
    )
    assert "<td>999</td><td>ANN</td>" in render(compiled, recipient()).html
    assert MAX_WORK > 1000 * 20


def test_output_is_capped() -> None:
    chunk = "x" * 10_000
    source = f"{{% for i in range(1000) %}}{chunk}{{% endfor %}}"
    compiled = compile_template(TemplateSource(subject="s", body_html=source), POLICY)
    with pytest.raises(RenderError, match=f"longer than {MAX_OUTPUT_LENGTH:,}"):
        render(compiled, recipient())


@pytest.mark.parametrize(
    "source",
    [
        "{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}",
        "{{ " + "[" * 1000 + "]" * 1000 + " }}",
        "{{ " + "-" * 5000 + "1 }}",
        "{% if 1 %}" * 500 + "{% endif %}" * 500,
        "{% for i in [1] %}" * 30 + "{% endfor %}" * 30,
        "{{ 1" + "0" * 5000 + " }}",
    ],
)
def test_deep_nesting_is_a_problem_not_a_crash(source: str) -> None:
    problems = validate_template(TemplateSource(subject="s", body_html=source))
    assert len(problems) == 1
    assert problems[0].field == "body_html"
    with pytest.raises(TemplateProblem):
        compile_template(TemplateSource(subject="s", body_html=source), POLICY)


@pytest.mark.parametrize(
    "source",
    [
        "{{" * 200_000,
        "{{ '" * 100_000,
        "{% raw %}" * 50_000,
        "<a " * 150_000,
        '<a "' * 100_000,
        "<!--" * 100_000,
        "<style>" * 60_000,
        "{Contact." * 50_000,
    ],
)
def test_large_hostile_sources_are_handled_quickly(source: str) -> None:
    """Near the size cap, shapes that make naive parsers quadratic (unclosed
    tags, comments, Jinja blocks) compile in about a second, not minutes.
    Measured in CPU time: the work done, not how long a busy machine made
    the test wait for a core."""
    started = time.process_time()
    with contextlib.suppress(TemplateProblem):
        compile_template(TemplateSource(subject="s", body_html=source), POLICY)
    assert time.process_time() - started < 5.0


@settings(max_examples=150, deadline=None)
@given(first_name=st.text(), tier=st.text())
def test_any_contact_value_renders_escaped_in_html_and_plain_in_text(
    first_name: str, tier: str
) -> None:
    compiled = _contact_template()
    message = render(compiled, recipient(first_name, {"Tier": tier}))
    assert f'<p id="name">{escape(first_name)}</p>' in message.html
    assert f'<p id="tier">{escape(tier)}</p>' in message.html
    assert f"[{first_name}|{tier}]" in message.text
    assert message.subject == f"Hi {first_name}"
    assert ("FIRST_NAME" in message.empty_placeholders) == (not first_name.strip())


@functools.cache
def _contact_template() -> CompiledTemplate:
    """Compiled once for every hypothesis example."""
    return compile_template(
        TemplateSource(
            subject="Hi {{ FIRST_NAME }}",
            body_html='<p id="name">{{ FIRST_NAME }}</p><p id="tier">{{ TIER }}</p>',
            body_text="[{{ FIRST_NAME }}|{{ TIER }}]",
        ),
        POLICY,
    )
