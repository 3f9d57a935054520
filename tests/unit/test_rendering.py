"""Rendering: placeholders, EspoCRM syntax, validation, the layout (footer,
opt-out link, logo, pixel), link rewriting, CSS inlining and the text part."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from app.services import rendering_html
from app.services.rendering import (
    MAX_TEMPLATE_LENGTH,
    CompiledTemplate,
    RecipientContext,
    RenderedMessage,
    RenderError,
    RenderPolicy,
    TemplateProblem,
    TemplateSource,
    compile_template,
    contact_placeholders,
    render,
    validate_template,
)

POLICY = RenderPolicy(
    company_name="Acme Widgets", postal_address="1 Main St\nSpringfield, IL 62701"
)
CONTACT = {
    "first_name": "Ann",
    "last_name": "Lee",
    "email": "ann@example.com",
    "company": "Initech",
    "phone_number": "555-0100",
}
CUSTOM = {"Tier": "gold", "Favourite colour": "teal", "shoeSize": 38}


def click_url(link_id: int) -> str:
    return f"https://mail.example.com/t/c/{link_id}?k=1&s=2"


def recipient(
    contact: Mapping[str, object] | None = None, custom: Mapping[str, object] | None = None
) -> RecipientContext:
    return RecipientContext(
        placeholders=contact_placeholders(
            CONTACT if contact is None else contact, CUSTOM if custom is None else custom
        ),
        opt_out_url="https://mail.example.com/u/OPT",
        view_online_url="https://mail.example.com/v/VIEW",
        open_pixel_url="https://mail.example.com/t/o/PIXEL.gif",
        click_url=click_url,
        tracking_url=lambda name: f"https://mail.example.com/t/n/{name}",
    )


def compiled_for(
    body_html: str,
    *,
    subject: str = "Hello",
    body_text: str | None = None,
    policy: RenderPolicy = POLICY,
    footer_html: str = "",
    header_logo_url: str = "",
) -> CompiledTemplate:
    source = TemplateSource(
        subject=subject,
        body_html=body_html,
        body_text=body_text,
        footer_html=footer_html,
        header_logo_url=header_logo_url,
    )
    return compile_template(source, policy)


def rendered(
    body_html: str, contact: Mapping[str, object] | None = None, **options: object
) -> RenderedMessage:
    return render(compiled_for(body_html, **options), recipient(contact))  # type: ignore[arg-type]


def body_of(html: str) -> str:
    """The rendered body without the layout's footer."""
    start = html.index("<body>") + len("<body>")
    return html[start : html.index('<div class="sluice-footer"')]


# ---------------------------------------------------------------- placeholders


@pytest.mark.parametrize(
    ("placeholder", "value"),
    [
        ("{{FIRST_NAME}}", "Ann"),
        ("{{ first_name }}", "Ann"),
        ("{{ LAST_NAME }}", "Lee"),
        ("{{ last_name }}", "Lee"),
        ("{{ EMAIL }}", "ann@example.com"),
        ("{{ email }}", "ann@example.com"),
        ("{{ COMPANY }}", "Initech"),
        ("{{ company }}", "Initech"),
        ("{{ FULL_NAME }}", "Ann Lee"),
        ("{{ PHONE_NUMBER }}", "555-0100"),
        ("{{ TIER }}", "gold"),
        ("{{ tier }}", "gold"),
        ("{{ Tier }}", "gold"),
        ("{{ SHOE_SIZE }}", "38"),
        ("{{ shoeSize }}", "38"),
        ("{{ custom['Favourite colour'] }}", "teal"),
        ("{{ custom.Tier }}", "gold"),
        ("{Person.firstName}", "Ann"),
        ("{Contact.firstName}", "Ann"),
        ("{Lead.lastName}", "Lee"),
        ("{Person.emailAddress}", "ann@example.com"),
        ("{Contact.accountName}", "Initech"),
        ("{Account.name}", "Initech"),
        ("{Person.name}", "Ann Lee"),
        ("{Contact.phoneNumber}", "555-0100"),
        ("{optOutUrl}", "https://mail.example.com/u/OPT"),
        ("{trackingUrl:55f2c87b09a220a78}", "https://mail.example.com/t/n/55f2c87b09a220a78"),
        ("{{ tracking_url('spring') }}", "https://mail.example.com/t/n/spring"),
        ("{{ view_online_url }}", "https://mail.example.com/v/VIEW"),
    ],
)
def test_placeholder_forms(placeholder: str, value: str) -> None:
    message = rendered(f"<p>[{placeholder}]</p>", subject=f"S {placeholder}")
    assert f"<p>[{value}]</p>" in message.html
    assert f"[{value}]" in message.text
    assert message.subject == f"S {value}"
    assert message.empty_placeholders == frozenset()


def test_contact_placeholders_names() -> None:
    placeholders = contact_placeholders(
        {"first_name": "Ann", "emailAddress": "a@example.com"},
        {"Key With Space": 1, "tier": "gold", "first_name": "custom loses"},
    )
    assert placeholders["FIRST_NAME"] == placeholders["first_name"] == "Ann"
    assert placeholders["EMAIL_ADDRESS"] == placeholders["email_address"] == "a@example.com"
    assert placeholders["TIER"] == "gold"
    assert placeholders["FULL_NAME"] == "Ann"
    assert "Key With Space" not in placeholders
    assert placeholders["custom"] == {
        "Key With Space": 1,
        "tier": "gold",
        "first_name": "custom loses",
    }


def test_custom_keys_that_are_not_identifiers_only_through_custom() -> None:
    message = rendered("<p>{{ custom['Key With Space'] }}|{{ KEY_WITH_SPACE }}</p>", contact={})
    assert "<p>|</p>" in message.html


@pytest.mark.parametrize(
    "name", ["opt_out_url", "OPT_OUT_URL", "click_url", "tracking_url", "custom"]
)
def test_contact_data_cannot_take_sluices_names(name: str) -> None:
    placeholders = contact_placeholders(
        {name: "https://evil.example"}, {name: "https://evil.example"}
    )
    assert placeholders.get(name) in (None, {name: "https://evil.example"})
    context = recipient(custom={"opt_out_url": "https://evil.example", "view_online_url": "x"})
    compiled = compiled_for('<a href="{{ opt_out_url }}">stop</a> {{ view_online_url }}')
    message = render(compiled, context)
    assert "evil" not in message.html
    assert 'href="https://mail.example.com/u/OPT"' in message.html


def test_a_list_value_is_output_joined() -> None:
    message = render(compiled_for("<p>{{ TAGS }}</p>"), recipient(custom={"tags": ["a", "b<c"]}))
    assert "<p>a, b&lt;c</p>" in message.html


# ------------------------------------------------------------ empty placeholders


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_placeholder_without_value_renders_empty_and_is_reported(value: object) -> None:
    message = rendered("<p>Hi {{ FIRST_NAME }}!</p>", contact={**CONTACT, "first_name": value})
    assert "<p>Hi " in message.html
    assert "None" not in message.html
    assert message.empty_placeholders == {"FIRST_NAME"}


def test_missing_placeholders_and_custom_keys_are_reported() -> None:
    compiled = compiled_for(
        "{{ NICKNAME }} {{ custom['Pet name'] }} {{ custom.Tier }}"
        " {% set k = 'Dyn' %}{{ custom[k] }}",
        subject="{{ TITLE }} {{ FIRST_NAME }}",
    )
    message = render(compiled, recipient())
    assert message.empty_placeholders == {
        "NICKNAME",
        "custom['Pet name']",
        "custom['Dyn']",
        "TITLE",
    }


def test_placeholders_guarded_by_a_condition_are_still_reported() -> None:
    message = rendered("{% if COMPANY %}at {{ COMPANY }}{% endif %}", contact={"first_name": "A"})
    assert "at " not in body_of(message.html)
    assert message.empty_placeholders == {"COMPANY"}


def test_default_filter_for_an_empty_placeholder() -> None:
    message = rendered("<p>Hi {{ FIRST_NAME|default('there', true) }}</p>", contact={})
    assert "<p>Hi there</p>" in message.html


# --------------------------------------------------------------------- escaping


def test_contact_data_is_escaped_in_html_and_plain_in_text_and_subject() -> None:
    contact = {**CONTACT, "first_name": '<script>alert("x")</script>&'}
    compiled = compiled_for(
        '<p title="{{ FIRST_NAME }}">{{ FIRST_NAME }}</p>',
        subject="Hi {{ FIRST_NAME }}",
        body_text="Hi {{ FIRST_NAME }}",
    )
    message = render(compiled, recipient(contact))
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;"
    assert f'<p title="{escaped}">{escaped}</p>' in message.html
    assert "<script>" not in message.html
    assert message.text.startswith('Hi <script>alert("x")</script>&')
    assert message.subject == 'Hi <script>alert("x")</script>&'


def test_subject_keeps_cr_lf_for_composition_to_refuse() -> None:
    contact = {**CONTACT, "first_name": "Ann\r\nBcc: victim@example.com"}
    message = render(compiled_for("<p>x</p>", subject="Hi {{ FIRST_NAME }}"), recipient(contact))
    assert message.subject == "Hi Ann\r\nBcc: victim@example.com"


def test_contact_data_is_never_evaluated_as_a_template() -> None:
    contact = {**CONTACT, "first_name": "{{ opt_out_url }}{% if 1 %}x{% endif %}"}
    message = rendered("<p>{{ FIRST_NAME }}</p>", contact=contact)
    assert "<p>{{ opt_out_url }}{% if 1 %}x{% endif %}</p>" in message.html


@pytest.mark.parametrize("style", ["", "<style>p { color: red }</style>"])
def test_encoded_braces_in_html_are_never_evaluated(style: str) -> None:
    """``&#123;&#123;`` displays as ``{{``: after CSS inlining or HTML → text
    decode it, it must still be text, not Jinja."""
    message = rendered(f"{style}<p>&#123;&#123; opt_out_url &#125;&#125; &#123;% if 1 %&#125;</p>")
    assert "{{ opt_out_url }} {% if 1 %}" in message.text
    assert "mail.example.com/u/OPT" not in body_of(message.html)
    assert "mail.example.com/u/OPT" not in message.text.split("Springfield")[0]


# ------------------------------------------------------------------- validation


def test_syntax_errors_name_field_and_line() -> None:
    source = TemplateSource(
        subject="Hi {{ FIRST_NAME",
        body_html="<p>one</p>\n<p>two</p>\n<p>{{ x }</p>",
        body_text="ok\n{% if x %}",
        footer_html="{% endif %}",
    )
    problems = validate_template(source)
    assert [str(problem) for problem in problems] == [
        "subject line 1: unexpected end of template, expected 'end of print statement'.",
        "body_html line 3: unexpected '}'",
        "body_text line 2: Unexpected end of template. Jinja was looking for the following "
        "tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be closed is 'if'.",
        "footer_html line 1: Encountered unknown tag 'endif'.",
    ]
    assert (problems[1].field, problems[1].line) == ("body_html", 3)
    with pytest.raises(TemplateProblem, match="subject line 1"):
        compile_template(source, POLICY)


def test_a_valid_template_has_no_problems() -> None:
    source = TemplateSource(
        subject="{{ FIRST_NAME }}, news",
        body_html="<style>a { color: red }</style>{% for i in range(3) %}{{ i }}{% endfor %}",
        body_text="{Person.firstName}\n{optOutUrl}",
        footer_html="<p>{optOutLink}</p>",
        header_logo_url="https://cdn.example.com/logo.png",
    )
    assert validate_template(source) == []


def test_oversize_fields_are_refused() -> None:
    big = "x" * (MAX_TEMPLATE_LENGTH + 1)
    problems = validate_template(TemplateSource(subject=big, body_html=big, footer_html="ok"))
    assert [problem.field for problem in problems] == ["subject", "body_html"]
    assert "longer than 524,288 characters" in problems[0].message


@pytest.mark.parametrize("logo", ["javascript:alert(1)", "/logo.png", "data:image/png;base64,AAAA"])
def test_the_logo_must_be_a_web_url(logo: str) -> None:
    problems = validate_template(TemplateSource(subject="s", body_html="b", header_logo_url=logo))
    assert [problem.field for problem in problems] == ["header_logo_url"]


@pytest.mark.parametrize(
    ("company", "address", "field"),
    [("", "1 Main St", "company_name"), ("Acme", "  \n ", "postal_address")],
)
def test_sending_is_refused_without_company_name_or_postal_address(
    company: str, address: str, field: str
) -> None:
    with pytest.raises(TemplateProblem, match="CAN-SPAM") as error:
        compiled_for("<p>x</p>", policy=RenderPolicy(company_name=company, postal_address=address))
    assert error.value.field == field


def test_render_errors_name_the_part() -> None:
    compiled = compiled_for("<p>{{ FIRST_NAME + 1 }}</p>", subject="{{ missing_function() }}")
    with pytest.raises(RenderError, match=r"^subject: 'missing_function' is undefined"):
        render(compiled, recipient())
    with pytest.raises(RenderError, match=r"^html: "):
        render(compiled_for("<p>{{ FIRST_NAME + 1 }}</p>"), recipient())


# ------------------------------------------------------------- EspoCRM syntax


def test_espocrm_translation_leaves_jinja_and_css_alone() -> None:
    source = (
        "<style>a { color: red } p{margin:0}</style>"
        "{{ '{Person.firstName}' }} {% raw %}{optOutUrl}{% endraw %} {# {Contact.lastName} #}"
        " {Person.firstName} {optOutUrl} {trackingUrl:abc-1} {lowercase.field} { Spaced.field }"
    )
    translated = rendering_html.translate_espocrm(source, html_field=True)
    assert translated == (
        "<style>a { color: red } p{margin:0}</style>"
        "{{ '{Person.firstName}' }} {% raw %}{optOutUrl}{% endraw %} {# {Contact.lastName} #}"
        " {{ FIRST_NAME }} {{ opt_out_url }} {{ tracking_url('abc-1') }} {lowercase.field}"
        " { Spaced.field }"
    )


def test_espocrm_opt_out_link_is_a_link_in_html_and_a_url_in_text() -> None:
    compiled = compiled_for("<p>{optOutLink}</p>", body_text="Leave: {optOutLink}")
    message = render(compiled, recipient())
    assert '<p><a href="https://mail.example.com/u/OPT">Unsubscribe</a></p>' in message.html
    assert "Leave: https://mail.example.com/u/OPT" in message.text
    assert compiled.has_opt_out_link


def test_espocrm_translation_keeps_line_numbers() -> None:
    problems = validate_template(
        TemplateSource(subject="s", body_html="{optOutLink}\n{Person.firstName}\n{{ x }")
    )
    assert str(problems[0]) == "body_html line 3: unexpected '}'"


# ---------------------------------------------------------------- link rewriting


def test_links_are_rewritten_in_order_of_appearance() -> None:
    compiled = compiled_for(
        '<a href="https://example.com/a?x=1&amp;y=2">A</a>'
        "<a HREF='https://example.com/b'>B</a>"
        "<A class=button href=https://example.com/c>C</A>"
        '<a href="https://example.com/a?x=1&amp;y=2">A again</a>'
        '<a  title="t"\n   href = " http://example.com/d " >D</a>',
        footer_html='<a href="https://example.com/footer">F</a>',
    )
    assert compiled.links == (
        "https://example.com/a?x=1&y=2",
        "https://example.com/b",
        "https://example.com/c",
        "https://example.com/a?x=1&y=2",
        "http://example.com/d",
        "https://example.com/footer",
    )
    message = render(compiled, recipient())
    for link_id in range(6):
        assert f'href="https://mail.example.com/t/c/{link_id}?k=1&amp;s=2"' in message.html
    assert "example.com/a" not in message.html


@pytest.mark.parametrize(
    "anchor",
    [
        '<a href="mailto:sales@example.com">mail</a>',
        '<a href="tel:+15550100">call</a>',
        '<a href="#top">top</a>',
        '<a href="/relative/page">relative</a>',
        '<a href="page.html">relative</a>',
        '<a href="//example.com/no-scheme">no scheme</a>',
        '<a href="javascript:alert(1)">js</a>',
        '<a href="ftp://example.com/file">ftp</a>',
        '<a href="https://example.com/?u={{ EMAIL }}">personal</a>',
        '<a href="{{ opt_out_url }}">unsubscribe</a>',
        '<a href="{optOutUrl}">unsubscribe</a>',
        '<a href="{trackingUrl:abc}">tracked by name</a>',
        '<a name="https://example.com/not-href">name</a>',
        "<p>https://example.com/plain-text</p>",
        '<!-- <a href="https://example.com/in-comment">c</a> -->',
        '<area href="https://example.com/area">',
        '<link rel="stylesheet" href="https://example.com/style.css">',
        '<abbr href="https://example.com/abbr">abbr</abbr>',
    ],
)
def test_links_that_are_not_tracked(anchor: str) -> None:
    compiled = compiled_for(anchor)
    assert compiled.links == ()
    assert "click_url" not in compiled.html_source


def test_click_tracking_off_leaves_links_alone() -> None:
    policy = RenderPolicy(company_name="Acme", postal_address="1 Main St", click_tracking=False)
    compiled = compiled_for('<a href="https://example.com/a">A</a>', policy=policy)
    assert compiled.links == ()
    message = render(compiled, recipient())
    assert '<a href="https://example.com/a">A</a>' in message.html
    assert "A (https://example.com/a)" in message.text


# ------------------------------------------------------------ opt-out and footer


def test_opt_out_link_is_appended_when_the_body_has_none() -> None:
    compiled = compiled_for("<p>News</p>")
    message = render(compiled, recipient())
    assert not compiled.has_opt_out_link
    assert '<a href="https://mail.example.com/u/OPT">Unsubscribe</a>' in message.html
    assert message.text.endswith("Unsubscribe: https://mail.example.com/u/OPT")


@pytest.mark.parametrize(
    ("body", "footer"),
    [
        ('<a href="{{ opt_out_url }}">Leave</a>', ""),
        ('<a href="{optOutUrl}">Leave</a>', ""),
        ("{optOutLink}", ""),
        ("<p>News</p>", '<a href="{{ opt_out_url }}">Leave</a>'),
    ],
)
def test_no_opt_out_link_is_appended_when_body_or_footer_has_one(body: str, footer: str) -> None:
    compiled = compiled_for(body, footer_html=footer)
    message = render(compiled, recipient())
    assert compiled.has_opt_out_link
    assert message.html.count("https://mail.example.com/u/OPT") == 1
    assert "Unsubscribe: " not in message.text
    assert "https://mail.example.com/u/OPT" in message.text


def test_upper_case_built_in_urls() -> None:
    compiled = compiled_for('<a href="{{ OPT_OUT_URL }}">Leave</a> {{ VIEW_ONLINE_URL }}')
    message = render(compiled, recipient())
    assert compiled.has_opt_out_link
    assert compiled.placeholder_names == frozenset()
    assert message.html.count("https://mail.example.com/u/OPT") == 1
    assert "https://mail.example.com/v/VIEW" in message.html
    assert message.empty_placeholders == frozenset()


def test_no_opt_out_link_when_the_administrator_switched_it_off() -> None:
    policy = RenderPolicy(company_name="Acme", postal_address="1 Main St", mandatory_opt_out=False)
    message = render(compiled_for("<p>News</p>", policy=policy), recipient())
    assert "mail.example.com/u/OPT" not in message.html + message.text


def test_a_written_text_part_gets_its_own_opt_out_line() -> None:
    compiled = compiled_for('<a href="{{ opt_out_url }}">Leave</a>', body_text="Plain news")
    message = render(compiled, recipient())
    assert message.text.startswith("Plain news\n\n")
    assert message.text.endswith("Unsubscribe: https://mail.example.com/u/OPT")
    assert message.html.count("https://mail.example.com/u/OPT") == 1


def test_footer_holds_company_address_and_layout_footer() -> None:
    policy = RenderPolicy(
        company_name="Smith & Sons <Ltd>", postal_address="1 Main St\r\nSpringfield {{ x }}"
    )
    message = render(
        compiled_for("<p>x</p>", policy=policy, footer_html="<p>Why {{ FIRST_NAME }}</p>"),
        recipient(),
    )
    assert (
        '<p>Why Ann</p><p class="sluice-address">Smith &amp; Sons &lt;Ltd&gt;<br>'
        "1 Main St<br>Springfield {{ x }}</p>"
    ) in message.html
    assert "Why Ann\n\nSmith & Sons <Ltd>\n1 Main St\nSpringfield {{ x }}" in message.text


def test_header_shows_the_logo_when_set() -> None:
    with_logo = rendered("<p>x</p>", header_logo_url='https://cdn.example.com/logo.png?a=1&b="2"')
    assert (
        '<img src="https://cdn.example.com/logo.png?a=1&amp;b=&quot;2&quot;" alt="Acme Widgets"'
        in with_logo.html
    )
    assert "<img" not in rendered("<p>x</p>").html


# -------------------------------------------------------------------- open pixel


def test_open_pixel_only_with_open_tracking() -> None:
    policy = RenderPolicy(company_name="Acme", postal_address="1 Main St", open_tracking=True)
    message = render(compiled_for("<html><body><p>x</p></body></html>", policy=policy), recipient())
    assert re.search(
        r'<img src="https://mail\.example\.com/t/o/PIXEL\.gif" width="1" height="1" alt="" '
        r'style="[^"]*"></body></html>$',
        message.html,
    )
    assert "PIXEL" not in message.text
    assert "PIXEL" not in rendered("<p>x</p>").html


# --------------------------------------------------------------------- document


def test_a_fragment_is_wrapped_in_a_document() -> None:
    html = rendered("<p>x</p>").html
    assert html.startswith('<!DOCTYPE html><html><head><meta charset="utf-8">')
    assert html.endswith("</div></body></html>")


def test_a_whole_document_keeps_its_head_and_gets_the_layout_inside_body() -> None:
    html = rendered(
        '<html><head><title>T</title></head><body class="main"><p>x</p></body></html>',
        header_logo_url="https://cdn.example.com/l.png",
    ).html
    assert html.startswith(
        '<html><head><title>T</title></head><body class="main"><div class="sluice-header"'
    )
    assert html.endswith("</div></body></html>")


# ----------------------------------------------------------------- CSS inlining


def test_css_is_inlined_at_compile_time_and_keeps_jinja_intact() -> None:
    compiled = compiled_for(
        "<html><head><style>p { color: red } .x { font-weight: bold }"
        " @media (max-width: 600px) { p { color: blue } }</style></head><body>"
        '<p class="x" title="{{ FIRST_NAME }}" style="margin: {{ TIER|length }}px">'
        "Hi {{ FIRST_NAME }} {% if COMPANY %}of {{ COMPANY }}{% endif %}</p>"
        "<table>{% for i in range(2) %}<tr><td>{{ i }}</td></tr>{% endfor %}</table>"
        "</body></html>"
    )
    assert 'title="{{ FIRST_NAME }}"' in compiled.html_source
    assert re.search(r'style="[^"]*margin: \{\{ TIER\|length \}\}px', compiled.html_source)
    assert "{% if COMPANY %}of {{ COMPANY }}{% endif %}" in compiled.html_source
    assert "@media (max-width: 600px)" in compiled.html_source
    assert "p { color: red }" not in compiled.html_source
    html = render(compiled, recipient()).html
    assert re.search(
        r'<p class="x" style="[^"]*color: red;[^"]*" title="Ann">Hi Ann of Initech</p>', html
    )
    assert "margin: 4px" in html
    assert re.search(r"<table>.*<td>0</td>.*<td>1</td>.*</table>", html)


def test_css_inlining_runs_once_per_compile_not_per_render(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_inline = rendering_html.inline_css

    def counting(document: str, protector: rendering_html.JinjaProtector) -> str:
        calls.append(document)
        return real_inline(document, protector)

    monkeypatch.setattr("app.services.rendering_layout.inline_css", counting)
    compiled = compiled_for("<style>p { color: red }</style><p>{{ FIRST_NAME }}</p>")
    for _ in range(3):
        render(compiled, recipient())
    assert len(calls) == 1


def test_jinja_in_a_tag_name_or_attribute_position_skips_inlining() -> None:
    compiled = compiled_for(
        '<style>p { color: red }</style><p {% if 1 %}id="a"{% endif %}>{{ FIRST_NAME }}</p>'
    )
    assert "<style>p { color: red }</style>" in compiled.html_source
    assert '<p id="a">Ann</p>' in render(compiled, recipient()).html


def test_stylesheets_named_by_a_template_are_never_read(tmp_path: Path) -> None:
    stylesheet = tmp_path / "style.css"
    stylesheet.write_text("p { color: green }")
    compiled = compiled_for(
        f'<link rel="stylesheet" href="{stylesheet}"><link rel="stylesheet" href="file://{stylesheet}">'
        "<style>b { color: red }</style><p>x</p>"
    )
    assert "green" not in compiled.html_source


# ------------------------------------------------------------------- text part


def test_text_part_is_derived_with_tracked_links_and_placeholders() -> None:
    compiled = compiled_for(
        "<h1>Hello {{FIRST_NAME}}</h1>"
        '<p>Read <a href="https://example.com/more"><b>more</b></a> or '
        '<a href="mailto:sales@example.com">mail us</a>.</p>'
        "<ul><li>- first</li><li>2. second</li></ul>"
        "<p>Price: 5 * 3_000 [sale]</p>"
        '<img src="https://example.com/pic.png" alt="A picture">'
    )
    assert (
        "Read more ({{ click_url(0) }}) or mail us (mailto:sales@example.com)."
        in compiled.text_source
    )
    assert "Hello {{FIRST_NAME}}" in compiled.text_source
    text = render(compiled, recipient()).text
    assert text.startswith("# Hello Ann\n\nRead more (https://mail.example.com/t/c/0?k=1&s=2) or")
    assert "  - - first\n  - 2. second" in text
    assert "Price: 5 * 3_000 [sale]" in text
    assert "A picture" in text
    assert "\\" not in text


def test_text_part_keeps_every_jinja_expression() -> None:
    protector = rendering_html.JinjaProtector()
    protected = protector.protect(
        '<p>{{ FIRST_NAME }}</p><a href="{{ click_url(3) }}">x</a>{% if a %}<b>y</b>{% endif %}'
    )
    text = protector.restore(rendering_html.html_to_text(protected))
    assert text == "{{ FIRST_NAME }}\n\nx ({{ click_url(3) }}){% if a %}y{% endif %}"


def test_text_part_from_conditional_blocks_has_no_runs_of_blank_lines() -> None:
    message = rendered("<p>a</p>{% if NOPE %}<p>b</p>{% endif %}<p>c</p>")
    assert "\n\n\n" not in message.text
    assert message.text.startswith("a\n\nc")


@pytest.mark.parametrize("blank", ["", "  \n "])
def test_a_blank_text_part_counts_as_absent(blank: str) -> None:
    compiled = compiled_for("<p>HTML {{ FIRST_NAME }}</p>", body_text=blank)
    assert compiled.text_derived
    assert render(compiled, recipient()).text.startswith("HTML Ann\n\n")


def test_custom_fields_can_be_looped_over() -> None:
    compiled = compiled_for(
        "{% for key, value in custom.items() %}[{{ key }}={{ value }}]{% endfor %}"
        "{{ custom.get('Tier') }}"
    )
    html = render(compiled, recipient(custom={"a": 1, "b<": "x"})).html
    assert "[a=1][b&lt;=x]" in html


def test_a_written_text_part_is_used_as_written() -> None:
    compiled = compiled_for(
        "<p>HTML {{ FIRST_NAME }}</p>", body_text="Text for {{ FIRST_NAME }}\n\n\n\nend"
    )
    message = render(compiled, recipient())
    assert message.text.startswith("Text for Ann\n\n\n\nend\n\n")
    assert "HTML" not in message.text
    assert not compiled.text_derived
