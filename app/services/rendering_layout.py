"""The layout around a mass email's body, built once as Jinja source (used
by ``app.services.rendering.compile_template``).

Rules:
- the HTML part is one document: a fragment is wrapped in a minimal one
  (charset, viewport); in a whole document the header goes right after
  ``<body …>`` and the footer right before ``</body>``;
- the header shows the logo when there is one, with the company name as
  its alt text;
- the footer holds the layout's ``footer_html``, then the company name and
  postal address (HTML-escaped, one line per line: CAN-SPAM), then an
  "Unsubscribe" link when the part has none of its own;
- links are rewritten before CSS is inlined and before the text part is
  derived, so both parts carry the same tracked link ids;
- the open pixel goes last, before ``</body>``, and not in the text part;
- the text part is the written one, or the text of the body; either way
  followed by the footer's text and, when needed, ``Unsubscribe: URL``.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.services.rendering_html import (
    JinjaProtector,
    find_body_tags,
    html_to_text,
    inline_css,
    rewrite_links,
)

_DOCUMENT_START = (
    '<!DOCTYPE html><html><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>'
)
_DOCUMENT_END = "</body></html>"
_HEADER = (
    '<div class="sluice-header" style="text-align:center;padding:16px 0;">'
    '<img src="{logo}" alt="{alt}" style="max-width:200px;height:auto;border:0;"></div>'
)
_FOOTER = (
    '<div class="sluice-footer" style="margin-top:24px;padding-top:12px;'
    'border-top:1px solid #dddddd;font-size:12px;color:#666666;text-align:center;">'
    "{content}</div>"
)
_ADDRESS = '<p class="sluice-address">{company}<br>{address}</p>'
_OPT_OUT = '<p class="sluice-opt-out"><a href="{href}">Unsubscribe</a></p>'
_OPT_OUT_TEXT = "Unsubscribe: {{ opt_out_url }}"
_OPEN_PIXEL = (
    '<img src="{src}" width="1" height="1" alt="" '
    'style="display:block;width:1px;height:1px;border:0;">'
)


@dataclass(frozen=True)
class Layout:
    """What surrounds the body, from the template's layout and the policy."""

    company_name: str
    postal_address: str
    logo_url: str
    click_tracking: bool
    open_tracking: bool
    html_opt_out: bool  # append the opt-out link to the HTML part
    text_opt_out: bool  # append the opt-out line to the text part


@dataclass(frozen=True)
class MessageSources:
    """The HTML and text parts as Jinja source; ``links[n]`` is the URL
    behind ``{{ click_url(n) }}``."""

    html: str
    text: str
    links: tuple[str, ...]


def build_sources(body: str, footer: str, text: str | None, layout: Layout) -> MessageSources:
    """HTML and text parts for a (valid, EspoCRM-translated) body, layout
    footer and optional written text part."""
    protector = JinjaProtector(
        body, footer, layout.company_name, layout.postal_address, layout.logo_url
    )
    protected_body = protector.protect(body)
    protected_footer = protector.protect(footer)
    links: list[str] = []
    if layout.click_tracking:
        protected_body = rewrite_links(protected_body, links, protector)
        protected_footer = rewrite_links(protected_footer, links, protector)
    footer_block = protected_footer + _address_block(protector, layout)
    return MessageSources(
        html=_html_document(protector, protected_body, footer_block, layout),
        text=_text_part(protector, text, protected_body, footer_block, layout.text_opt_out),
        links=tuple(links),
    )


def _address_block(protector: JinjaProtector, layout: Layout) -> str:
    """Company name and postal address, HTML-escaped, one line per line."""
    lines = layout.postal_address.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    address = "<br>".join(protector.literal(line.strip()) for line in lines if line.strip())
    company = protector.literal(layout.company_name.strip())
    return _ADDRESS.format(company=company, address=address)


def _html_document(protector: JinjaProtector, body: str, footer: str, layout: Layout) -> str:
    """The whole HTML part: header, body, footer, CSS inlined, pixel."""
    if layout.html_opt_out:
        footer += _OPT_OUT.format(href=protector.marker("{{ opt_out_url }}"))
    footer = _FOOTER.format(content=footer)
    header = ""
    if layout.logo_url.strip():
        header = _HEADER.format(
            logo=protector.literal(layout.logo_url.strip()),
            alt=protector.literal(layout.company_name.strip()),
        )
    body_tags = find_body_tags(body)
    if body_tags is None:
        document = _DOCUMENT_START + header + body + footer + _DOCUMENT_END
    else:
        start, end = body_tags
        document = body[:start] + header + body[start:end] + footer + body[end:]
    document = inline_css(document, protector)
    if layout.open_tracking:
        pixel = _OPEN_PIXEL.format(src=protector.marker("{{ open_pixel_url }}"))
        end = (find_body_tags(document) or (0, len(document)))[1]
        document = document[:end] + pixel + document[end:]
    return protector.restore(protector.escape_data(document))


def _text_part(
    protector: JinjaProtector, text: str | None, body: str, footer: str, opt_out: bool
) -> str:
    """The plain-text part: the written text or the text of the
    (link-rewritten) body, the footer's text, and the opt-out line."""
    footer_text = protector.restore(protector.escape_data(html_to_text(footer)))
    if text is None:
        text = protector.restore(protector.escape_data(html_to_text(body)))
    parts = [text.rstrip("\n"), footer_text]
    if opt_out:
        parts.append(_OPT_OUT_TEXT)
    return "\n\n".join(part for part in parts if part)
