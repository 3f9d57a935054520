"""HTML work done once per mass email (used by ``app.services.rendering``):
EspoCRM placeholder syntax, keeping Jinja syntax out of the HTML tools' way,
link rewriting, CSS inlining and HTML → text.

Rules:
- EspoCRM's ``{optOutUrl}``, ``{optOutLink}``, ``{trackingUrl:ID}`` and
  ``{Entity.field}`` become Jinja placeholders; text inside ``{{ … }}``,
  ``{% … %}``, ``{# … #}`` and raw blocks is left alone, and so is CSS
  (``a { color: red }`` has spaces and no ``Entity.field`` shape);
- HTML tools never see Jinja syntax: every ``{{ … }}``/``{% … %}``/``{# … #}``
  is swapped for an opaque marker (private-use characters around a number)
  and swapped back afterwards, so ``{{ FIRST_NAME }}`` survives CSS inlining
  and HTML → text;
- a link is tracked when it is the ``href`` of an ``<a>`` tag holding a
  static ``http``/``https`` URL: not ``mailto:``, ``tel:``, ``#anchor``,
  relative URLs, hrefs built from placeholders (the opt-out link among them)
  or URLs in plain text. Each tracked ``<a>`` gets its own link id, in order
  of appearance, even when two carry the same URL (reports can tell the top
  button from the bottom link);
- text the HTML tools decoded (``&#123;&#123;`` → ``{{``) is never read as
  Jinja: a ``{`` that would open Jinja syntax is written as ``{{ '{' }}``.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import css_inline
import html2text
from jinja2.exceptions import TemplateSyntaxError

from app.services.rendering_sandbox import text_environment

# EspoCRM field names that differ from Sluice's placeholder names.
ESPOCRM_FIELDS = {
    "firstName": "FIRST_NAME",
    "lastName": "LAST_NAME",
    "emailAddress": "EMAIL",
    "accountName": "COMPANY",
    "name": "FULL_NAME",
}
# ``{Account.name}`` is the company, not a person's name.
ESPOCRM_ENTITY_FIELDS = {("Account", "name"): "COMPANY"}

# Jinja regions are matched first so that EspoCRM patterns inside them stay
# untouched; each alternative ends at its closer *or the end of the text*,
# so an unclosed ``{{`` costs one scan, not one scan per ``{{``.
_ESPOCRM_SYNTAX = re.compile(
    r"""
    (?P<jinja>
        \{%-?\s*raw\s*-?%\}.*?(?:\{%-?\s*endraw\s*-?%\}|\Z)
      | \{\{.*?(?:\}\}|\Z)
      | \{%.*?(?:%\}|\Z)
      | \{\#.*?(?:\#\}|\Z)
    )
    | \{(?P<opt_out>optOutUrl|optOutLink)\}
    | \{trackingUrl:(?P<tracking_id>[A-Za-z0-9_.-]+)\}
    | \{(?P<entity>[A-Z][A-Za-z0-9]*)\.(?P<field>[A-Za-z][A-Za-z0-9_]*)\}
    """,
    re.VERBOSE | re.DOTALL,
)
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# HTML regions where a ``<`` does not start a tag we care about: comments and
# raw-text elements, matched before tags; each ends at its closer or the end.
_HTML_TOKEN = re.compile(
    r"""
    (?P<comment><!--.*?(?:-->|\Z))
    | (?P<raw><(?P<raw_name>style|script|title|textarea|xmp)\b[^<>]*>.*?(?:</(?P=raw_name)\s*>|\Z))
    | (?P<tag></?(?P<name>[A-Za-z][^\s/<>"']*)(?:"[^"<]*"|'[^'<]*'|[^'"<>])*>)
    | (?P<declaration><[!?][^<>]*>)
    """,
    re.VERBOSE | re.DOTALL | re.IGNORECASE,
)
_ATTRIBUTE = re.compile(
    r"""(?P<name>[^\s"'<>/=]+)(?:\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<uq>[^\s"'=<>`]+)))?"""
)
_TRACKED_SCHEMES = frozenset({"http", "https"})

_CSS_INLINER = css_inline.CSSInliner(
    keep_at_rules=True,  # @media queries cannot be inlined: keep them in <style>
    keep_link_tags=True,  # web fonts are the mail client's to load
    load_remote_stylesheets=False,  # never fetch a URL or read a file named by a template
)

_MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n{3,}")


def translate_espocrm(source: str, *, html_field: bool) -> str:
    """EspoCRM placeholders → Jinja. ``{optOutLink}`` is a whole link in HTML
    fields and the bare URL in text fields. Newlines are never added, so line
    numbers in error messages still match the source as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group("jinja") is not None:
            return match.group(0)
        if match.group("opt_out") == "optOutLink" and html_field:
            return '<a href="{{ opt_out_url }}">Unsubscribe</a>'
        if match.group("opt_out") is not None:
            return "{{ opt_out_url }}"
        if match.group("tracking_id") is not None:
            return f"{{{{ tracking_url('{match.group('tracking_id')}') }}}}"
        return "{{ " + espocrm_field_name(match.group("entity"), match.group("field")) + " }}"

    return _ESPOCRM_SYNTAX.sub(replace, source)


def espocrm_field_name(entity: str, field: str) -> str:
    """``firstName`` → ``FIRST_NAME``; ``phoneNumber`` → ``PHONE_NUMBER``."""
    known = ESPOCRM_ENTITY_FIELDS.get((entity, field)) or ESPOCRM_FIELDS.get(field)
    return known or _CAMEL_HUMP.sub("_", field).upper()


class JinjaProtector:
    """Swaps Jinja syntax for opaque markers and back. A marker is a number
    between two private-use characters that occur in none of the sources,
    so a template cannot forge one."""

    def __init__(self, *sources: str) -> None:
        text = "".join(sources)
        code = 0xE000
        while chr(code) in text or chr(code + 1) in text:
            code += 2  # the private-use area has 6,400 characters to try
        self.open, self.close = chr(code), chr(code + 1)
        self._marker = re.compile(f"{self.open}([0-9]+){self.close}")
        self._snippets: list[str] = []
        self._escape = re.compile("\\{(?=[{%#" + self.open + "])")

    def marker(self, snippet: str) -> str:
        """A marker that ``restore`` turns into ``snippet``."""
        self._snippets.append(snippet)
        return f"{self.open}{len(self._snippets) - 1}{self.close}"

    def protect(self, source: str) -> str:
        """Every run of Jinja syntax in ``source`` (valid Jinja) → a marker.
        A raw block is kept whole: its content is not HTML to work on."""
        pieces: list[str] = []
        jinja: list[str] = []
        in_raw = False
        for _, kind, value in text_environment().lex(source):
            if kind == "raw_begin":
                in_raw = True
            if kind == "data" and not in_raw:
                if jinja:
                    pieces.append(self.marker("".join(jinja)))
                    jinja = []
                pieces.append(value)
            else:
                jinja.append(value)
            if kind == "raw_end":
                in_raw = False
        if jinja:
            pieces.append(self.marker("".join(jinja)))
        return "".join(pieces)

    def escape_data(self, text: str) -> str:
        """A ``{`` in plain data that would open Jinja syntax (``{{``, ``{%``,
        ``{#``, or a marker's snippet right after it) → ``{{ '{' }}``."""
        return self._escape.sub(lambda _: self.marker("{{ '{' }}"), text)

    def literal(self, text: str) -> str:
        """Static text (company name, address) as HTML, safe from Jinja."""
        return self.escape_data(html.escape(text))

    def restore(self, text: str) -> str:
        return self._marker.sub(lambda match: self._snippets[int(match.group(1))], text)

    def marker_ids(self, text: str) -> list[str]:
        return self._marker.findall(text)

    def has_marker(self, text: str) -> bool:
        return self.open in text


def rewrite_links(html_source: str, links: list[str], protector: JinjaProtector) -> str:
    """Replace the href of every trackable ``<a>`` in protected HTML with a
    marker for ``{{ click_url(N) }}``; the URLs are appended to ``links``."""

    def rewrite(match: re.Match[str]) -> str:
        tag = match.group(0)
        if match.group("tag") is None or match.group("name").lower() != "a":
            return tag
        return _rewrite_anchor(tag, links, protector)

    return _HTML_TOKEN.sub(rewrite, html_source)


def _rewrite_anchor(tag: str, links: list[str], protector: JinjaProtector) -> str:
    head_length = 2  # "<a"

    def rewrite(match: re.Match[str]) -> str:
        if match.group("name").lower() != "href":
            return match.group(0)
        raw_value = match.group("dq") or match.group("sq") or match.group("uq") or ""
        url = trackable_url(raw_value, protector)
        if url is None:
            return match.group(0)
        links.append(url)
        return 'href="' + protector.marker(f"{{{{ click_url({len(links) - 1}) }}}}") + '"'

    return tag[:head_length] + _ATTRIBUTE.sub(rewrite, tag[head_length:-1]) + tag[-1]


def trackable_url(raw_value: str, protector: JinjaProtector) -> str | None:
    """The URL to track for an href as written in HTML, or None when the link
    is not tracked (not http/https, relative, or built from placeholders)."""
    if protector.has_marker(raw_value):
        return None
    url = html.unescape(raw_value).strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # a malformed IPv6 host: leave the link alone
        return None
    if parts.scheme.lower() not in _TRACKED_SCHEMES or not parts.netloc:
        return None
    return url


def inline_css(document: str, protector: JinjaProtector) -> str:
    """Inline the ``<style>`` rules of a protected document into ``style``
    attributes (mail clients drop ``<style>``); ``@media`` rules stay.

    Markers in text positions go through the HTML parser as comments, so a
    ``{% for %}`` between ``<table>`` and ``<tr>`` is not moved out of the
    table. The inliner may reorder attributes within a tag; anything more
    (a marker lost, text-position markers reordered, a marker turned into an
    attribute name, Jinja that no longer parses) keeps the document as it
    was, uninlined."""
    if re.search(r"<style\b", document, re.IGNORECASE) is None:
        return document
    if re.search(f"</?{protector.open}", document):
        return document  # Jinja as a tag name: the parser would make it text
    commented = _comment_text_markers(document, protector)
    try:
        inlined = _CSS_INLINER.inline(commented)
    except ValueError:  # css_inline.InlineError: unparseable CSS
        return document
    text_markers = re.compile(f"<!--({protector.open}[0-9]+{protector.close})-->")
    same_text_order = text_markers.findall(inlined) == text_markers.findall(commented)
    inlined = text_markers.sub(r"\1", inlined)
    intact = (
        same_text_order
        and sorted(protector.marker_ids(inlined)) == sorted(protector.marker_ids(document))
        and re.search(f"{protector.close}=", inlined) is None
        and _parses(protector.restore(inlined))
    )
    return inlined if intact else document


def _comment_text_markers(document: str, protector: JinjaProtector) -> str:
    """Markers outside tags, comments and raw-text elements → ``<!--M-->``."""
    marker = re.compile(f"{protector.open}[0-9]+{protector.close}")
    pieces: list[str] = []
    position = 0
    for match in _HTML_TOKEN.finditer(document):
        pieces.append(marker.sub(r"<!--\g<0>-->", document[position : match.start()]))
        pieces.append(match.group(0))
        position = match.end()
    pieces.append(marker.sub(r"<!--\g<0>-->", document[position:]))
    return "".join(pieces)


def _parses(source: str) -> bool:
    try:
        text_environment().parse(source)
    except TemplateSyntaxError:
        return False
    return True


def find_body_tags(document: str) -> tuple[int, int] | None:
    """Offsets just after ``<body …>`` and just before the last ``</body>``
    (the end when there is none), or None for a fragment without ``<body>``."""
    body_start: int | None = None
    body_end = len(document)
    for match in _HTML_TOKEN.finditer(document):
        name = (match.group("name") or "").lower()
        if name != "body":
            continue
        if match.group(0).startswith("</"):
            body_end = match.start()
        elif body_start is None:
            body_start = match.end()
    if body_start is None:
        return None
    return body_start, max(body_end, body_start)


def well_formed(document: str) -> str:
    """``document`` with every ``<`` that does not open a complete tag,
    comment, declaration or raw-text element written as ``&lt;``.

    Python's ``html.parser`` (under html2text) takes quadratic time on
    unclosed tags and comments before CPython 3.11.13 (CVE-2025-6069):
    150,000 ``<a `` would hold a runner for half an hour. The tokenizer here
    is linear, and what it leaves is well-formed for the parser."""
    pieces: list[str] = []
    position = 0
    for match in _HTML_TOKEN.finditer(document):
        pieces.append(document[position : match.start()].replace("<", "&lt;"))
        token = match.group(0)
        unclosed_comment = match.group("comment") is not None and not token.endswith("-->")
        unclosed_raw = match.group("raw") is not None and not re.search(r"</\w+\s*>\Z", token)
        pieces.append(token.replace("<", "&lt;") if unclosed_comment or unclosed_raw else token)
        position = match.end()
    pieces.append(document[position:].replace("<", "&lt;"))
    return "".join(pieces)


class _TextConverter(html2text.HTML2Text):
    """html2text set up for the plain-text part of an email: no wrapping (a
    long URL stays whole), no emphasis marks, tables as plain text, images as
    their alt text, and a link as ``text (URL)``."""

    def __init__(self) -> None:
        super().__init__(bodywidth=0)
        self.ignore_emphasis = True
        self.ignore_tables = True
        self.images_to_alt = True
        self.unicode_snob = True
        self.ul_item_mark = "-"
        self._hrefs: list[str] = []

    def handle_tag(self, tag: str, attrs: dict[str, str | None], start: bool) -> None:
        if tag != "a":
            super().handle_tag(tag, attrs, start)
            return
        self.current_tag = tag
        if start:
            href = (attrs.get("href") or "").strip()
            self._hrefs.append("" if href.startswith("#") else href)
        elif self._hrefs and (href := self._hrefs.pop()):
            self.o(f" ({href})")


def html_to_text(protected_html: str) -> str:
    """Plain text for protected HTML (markers pass through as text). The
    Markdown escapes html2text adds (``\\-`` at a line start…) are undone:
    this is text for people, not Markdown."""
    text = _TextConverter().handle(well_formed(protected_html))
    text = _MARKDOWN_ESCAPE.sub(r"\1", text).replace("\xa0", " ")
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip("\n")
