"""The pre-flight check: what a marketer must fix, or should know, before a
mass email is scheduled (SPEC §2).

Each finding has a severity: an ``error`` blocks scheduling
(``campaigns.schedule_mass_email``), a ``warning`` deserves a look, an
``info`` is for the record. Codes are stable; messages are for people.

Errors:
- ``no_sender_profile``: the campaign has no sender profile;
- ``no_target_list``: the campaign targets no list;
- ``no_content`` / ``subject_empty`` / ``template_problem``: nothing to
  send, an empty subject, or every problem ``validate_template`` finds
  (one finding each, with field and line);
- ``company_name_missing`` / ``postal_address_missing``: CAN-SPAM requires
  both in the footer (runtime settings);
- ``no_recipients``: nobody is left after exclusions and suppressions;
- ``unknown_tracking_url``: the content calls ``tracking_url('name')`` (or
  EspoCRM's ``{trackingUrl:name}``) with a name the campaign has no
  tracking URL for (a draft: its current ones; once scheduled: those its
  snapshot stored); it would render empty;
- ``free_mail_from``: the From address is at a free-mail domain whose DMARC
  policy or provider rules forbid sending it from another server
  (``FREE_MAIL_DMARC``, a fixed table: no DNS).

Warnings:
- ``opt_out_link_missing``: the body has no opt-out link and the
  administrator switched the mandatory link off (when it is on, the
  renderer appends one: ``opt_out_link_appended``, info);
- ``copy_subject_unchanged`` / ``copy_body_unchanged`` /
  ``copy_prefix_left``: a copy whose subject (without its ``COPY #n``
  prefix) or body is still the original's, or whose subject still starts
  with the prefix;
- ``empty_placeholder``: per placeholder, the recipients for whom it would
  render empty, counted in SQL over the audience (no render per recipient),
  with up to ``EXAMPLES`` addresses;
- ``tracking_url_not_checked``: ``tracking_url`` called with something
  other than one constant name (a variable, an expression), or used other
  than by a call, so the name cannot be checked before sending;
- ``spam_score`` above SpamAssassin's threshold; ``spam_check_failed``.

Info: ``recipients`` and each skipped or removed group (``excluded``,
``opted_out``, ``invalid_address``, ``no_address``; suppressed addresses
join them with the bounce issue); ``spam_score`` with the rules that fired,
or ``spam_check_skipped`` saying why (SpamAssassin not installed, errors
to fix first, nobody to build a message for); ``placeholder_not_checked``
for a ``custom['…']`` key SQLite's JSON path cannot quote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from jinja2 import nodes
from sqlalchemy import ColumnElement, SQLColumnExpression, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import Contact, MassEmail, SenderProfile
from app.services.audience import (
    AudienceCategory,
    AudienceSummary,
    audience_select,
    resolve_audience,
)
from app.services.dkim_keys import DkimKey
from app.services.engagement import TEST_QUEUE_ITEM_ID
from app.services.messages import (
    CONTACT_FIELDS,
    MessageError,
    MessageFactory,
    default_preview_contact,
    mass_email_source,
    render_policy,
    tracking_link_ids,
)
from app.services.rendering import (
    CompiledTemplate,
    RenderPolicy,
    TemplateProblem,
    TemplateSource,
    compile_template,
    validate_template,
)
from app.services.rendering_sandbox import SluiceEnvironment, html_environment, text_environment
from app.services.runtime_settings import RuntimeSettings
from app.services.spam_score import SPAMASSASSIN, SpamCheckError, SpamScore, spam_score
from config import Settings

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER: dict[Severity, int] = {"error": 0, "warning": 1, "info": 2}
EXAMPLES = 5  # example addresses per empty placeholder


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    message: str
    count: int | None = None
    examples: tuple[str, ...] = ()


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that block scheduling."""
    return [finding for finding in findings if finding.severity == "error"]


# ------------------------------------------------------------------ DMARC table


@dataclass(frozen=True)
class FreeMailDomain:
    """``pattern`` is a domain, or ``name.*`` for the provider's domain under
    every country-code domain (``yahoo.co.uk``, ``gmx.de``). Subdomains do
    not match: nobody gets a mailbox at ``mail.yahoo.com``."""

    pattern: str
    provider: str
    reason: str
    severity: Severity = "error"


_REJECT = "publishes DMARC p=reject: receivers refuse its mail sent from other servers"
_QUARANTINE = "publishes DMARC p=quarantine: its mail sent from other servers goes to spam"
_GMAIL = (
    "Google's sender guidelines: do not impersonate Gmail From: headers; Gmail "
    "enforces DMARC quarantine on them"
)
_NO_ALIGNMENT = (
    "a free-mail From cannot pass DMARC from your relay, which Gmail, Yahoo and "
    "Outlook.com require of bulk senders"
)

# Free-mail domains a mass email must not be sent From. A From at a mailbox
# provider's domain can never pass DMARC through the company's relay: SPF
# covers the provider's servers only and the relay cannot DKIM-sign for the
# provider's domain. Providers publishing p=reject or p=quarantine make
# receivers refuse or junk it outright; and since February 2024 Gmail and
# Yahoo (Outlook.com since May 2025) require bulk senders' mail to pass
# DMARC, so even a provider publishing p=none (or quarantining only a share)
# gets bulk mail refused at the largest receivers. We found no documented
# case where bulk mail From a free-mail domain delivers reliably, so every
# row is an error; ``severity`` stays per row for the day one is found.
# Policies are the published ones as last known; no DNS is read (tests run
# offline, and the rule must not flip with a resolver's mood).
FREE_MAIL_DMARC: tuple[FreeMailDomain, ...] = (
    # Yahoo Inc.: Yahoo, AOL, and Verizon's former mail, all p=reject.
    FreeMailDomain("yahoo.com", "Yahoo", _REJECT),
    FreeMailDomain("yahoo.*", "Yahoo", _REJECT),
    FreeMailDomain("ymail.com", "Yahoo", _REJECT),
    FreeMailDomain("rocketmail.com", "Yahoo", _REJECT),
    FreeMailDomain("aol.com", "AOL", _REJECT),
    FreeMailDomain("aol.*", "AOL", _REJECT),
    FreeMailDomain("aim.com", "AOL", _REJECT),
    FreeMailDomain("verizon.net", "Verizon (AOL)", _REJECT),
    # Google.
    FreeMailDomain("gmail.com", "Gmail", _GMAIL),
    FreeMailDomain("googlemail.com", "Gmail", _GMAIL),
    # Microsoft consumer mail.
    FreeMailDomain("hotmail.com", "Outlook.com", _NO_ALIGNMENT),
    FreeMailDomain("hotmail.*", "Outlook.com", _NO_ALIGNMENT),
    FreeMailDomain("outlook.com", "Outlook.com", _NO_ALIGNMENT),
    FreeMailDomain("outlook.*", "Outlook.com", _NO_ALIGNMENT),
    FreeMailDomain("live.com", "Outlook.com", _NO_ALIGNMENT),
    FreeMailDomain("live.*", "Outlook.com", _NO_ALIGNMENT),
    FreeMailDomain("msn.com", "Outlook.com", _NO_ALIGNMENT),
    # Apple.
    FreeMailDomain("icloud.com", "iCloud", _QUARANTINE),
    FreeMailDomain("me.com", "iCloud", _QUARANTINE),
    FreeMailDomain("mac.com", "iCloud", _QUARANTINE),
    # European and Russian providers.
    FreeMailDomain("gmx.com", "GMX", _NO_ALIGNMENT),
    FreeMailDomain("gmx.net", "GMX", _NO_ALIGNMENT),
    FreeMailDomain("gmx.*", "GMX", _NO_ALIGNMENT),
    FreeMailDomain("web.de", "WEB.DE", _NO_ALIGNMENT),
    FreeMailDomain("mail.ru", "Mail.ru", _REJECT),
    FreeMailDomain("yandex.com", "Yandex", _NO_ALIGNMENT),
    FreeMailDomain("yandex.*", "Yandex", _NO_ALIGNMENT),
)

# "name.*": the name under a country-code domain, directly or below co./com.
# (yahoo.fr, yahoo.co.uk, yahoo.com.br). Generic domains are listed by name,
# and country codes sold as generic ones are left out, so a company's own
# live.events or outlook.io is not caught by a pattern.
_COUNTRY_DOMAIN = re.compile(r"(?:(?:co|com)\.)?(?P<country>[a-z]{2})")
_GENERIC_USE_COUNTRY_CODES = frozenset(
    {"ai", "cc", "co", "fm", "gg", "io", "ly", "me", "sh", "so", "to", "tv", "ws"}
)


def _matches(pattern: str, domain: str) -> bool:
    if not pattern.endswith(".*"):
        return domain == pattern
    name = pattern[:-1]  # "yahoo."
    rest = _COUNTRY_DOMAIN.fullmatch(domain.removeprefix(name)) if domain.startswith(name) else None
    return rest is not None and rest["country"] not in _GENERIC_USE_COUNTRY_CODES


def free_mail_domain(address: str) -> FreeMailDomain | None:
    """The ``FREE_MAIL_DMARC`` row ``address``'s domain matches, if any."""
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    return next((row for row in FREE_MAIL_DMARC if _matches(row.pattern, domain)), None)


def _sender_findings(profile: SenderProfile | None) -> list[Finding]:
    if profile is None:
        return [
            Finding("error", "no_sender_profile", "the campaign has no sender profile: choose one")
        ]
    row = free_mail_domain(profile.from_address)
    if row is None:
        return []
    return [
        Finding(
            row.severity,
            "free_mail_from",
            f"the From address {profile.from_address} is at {row.provider}, which "
            f"{row.reason}; send from your own domain",
        )
    ]


# ------------------------------------------------------------------ content


def _runtime_findings(runtime: RuntimeSettings) -> list[Finding]:
    findings = []
    if not runtime.company_name.strip():
        findings.append(
            Finding(
                "error",
                "company_name_missing",
                "the company name for the footer is empty (CAN-SPAM): set company_name",
            )
        )
    if not runtime.postal_address.strip():
        findings.append(
            Finding(
                "error",
                "postal_address_missing",
                "the postal address for the footer is empty (CAN-SPAM): set postal_address",
            )
        )
    return findings


@dataclass(frozen=True)
class _Content:
    """The mass email's content and, when it compiles, its compilation."""

    source: TemplateSource | None
    compiled: CompiledTemplate | None
    findings: list[Finding]


def _content(mass_email: MassEmail, policy: RenderPolicy) -> _Content:
    """Check and compile the content. The company name and postal address
    are the runtime findings' to report, so a stand-in fills them for the
    analysis: the placeholders and links do not depend on them."""
    template = mass_email.template if mass_email.subject is None else None
    try:
        source = mass_email_source(mass_email, template)
    except MessageError as error:
        return _Content(None, None, [Finding("error", "no_content", str(error))])
    findings = [
        Finding("error", "template_problem", str(problem)) for problem in validate_template(source)
    ]
    if not source.subject.strip():
        findings.insert(0, Finding("error", "subject_empty", "the subject is empty"))
    if any(finding.code == "template_problem" for finding in findings):
        return _Content(source, None, findings)
    analysis_policy = replace(
        policy,
        company_name=policy.company_name.strip() or "(company name)",
        postal_address=policy.postal_address.strip() or "(postal address)",
    )
    try:
        compiled = compile_template(source, analysis_policy)
    except TemplateProblem as problem:
        return _Content(
            source, None, [*findings, Finding("error", "template_problem", str(problem))]
        )
    return _Content(source, compiled, findings)


def _opt_out_findings(compiled: CompiledTemplate, policy: RenderPolicy) -> list[Finding]:
    if compiled.has_opt_out_link:
        return []
    if policy.mandatory_opt_out:
        return [
            Finding(
                "info",
                "opt_out_link_appended",
                "the body has no opt-out link; an Unsubscribe link is added to the footer",
            )
        ]
    return [
        Finding(
            "warning",
            "opt_out_link_missing",
            "the body has no opt-out link and the mandatory opt-out link is switched off: "
            "add {{ opt_out_url }}",
        )
    ]


def _copy_findings(
    session: Session, mass_email: MassEmail, source: TemplateSource
) -> list[Finding]:
    """A copy left as it was copied: compared with the mass email it was
    copied from, as that one stands now."""
    if mass_email.copy_of_id is None:
        return []
    original = session.get(MassEmail, mass_email.copy_of_id)
    if original is None:
        return []
    try:
        original_source = mass_email_source(
            original, original.template if original.subject is None else None
        )
    except MessageError:
        return []
    findings = []
    prefix = f"COPY #{mass_email.copy_number} "
    subject = source.subject
    if subject.startswith(prefix):
        findings.append(
            Finding(
                "warning",
                "copy_prefix_left",
                f"the subject still starts with {prefix.strip()!r}",
            )
        )
        subject = subject.removeprefix(prefix)
    if subject == original_source.subject:
        findings.append(
            Finding(
                "warning",
                "copy_subject_unchanged",
                "the subject is unchanged from the mass email this one was copied from",
            )
        )
    if (source.body_html, source.body_text) == (
        original_source.body_html,
        original_source.body_text,
    ):
        findings.append(
            Finding(
                "warning",
                "copy_body_unchanged",
                "the body is unchanged from the mass email this one was copied from",
            )
        )
    return findings


# ------------------------------------------------------------------ tracking URLs

TRACKING_URL_FUNCTION = "tracking_url"


@dataclass(frozen=True)
class TrackingUrlUse:
    """What the content does with ``tracking_url``: the constant names it
    asks for, the constants that are not text (``tracking_url(5)``, never a
    name), and whether some use cannot be checked."""

    names: frozenset[str]
    not_text: frozenset[str]  # as written (repr)
    unchecked: bool


def _nodes(tree: nodes.Node) -> list[nodes.Node]:
    """Every node, without recursion (a deep tree must not exhaust the stack)."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.iter_child_nodes())
    return found


def _constant_argument(call: nodes.Call) -> nodes.Const | None:
    """The argument of ``tracking_url(…)`` when it is one constant; None
    otherwise."""
    if len(call.args) != 1 or call.kwargs or call.dyn_args or call.dyn_kwargs:
        return None
    argument = call.args[0]
    return argument if isinstance(argument, nodes.Const) else None


def tracking_url_use(compiled: CompiledTemplate) -> TrackingUrlUse:
    """Parse the compiled subject, HTML and text sources (EspoCRM's
    ``{trackingUrl:name}`` already translated) for ``tracking_url`` calls."""
    names: set[str] = set()
    not_text: set[str] = set()
    unchecked = False
    sources: tuple[tuple[str, SluiceEnvironment], ...] = (
        (compiled.subject_source, text_environment()),
        (compiled.html_source, html_environment()),
        (compiled.text_source, text_environment()),
    )
    for source, environment in sources:
        if TRACKING_URL_FUNCTION not in source:
            continue
        tree = _nodes(environment.parse(source))
        checked_callees = set()
        for node in tree:
            if (
                isinstance(node, nodes.Call)
                and isinstance(node.node, nodes.Name)
                and node.node.name == TRACKING_URL_FUNCTION
            ):
                constant = _constant_argument(node)
                if constant is None:
                    continue
                if isinstance(constant.value, str):
                    names.add(constant.value)
                else:
                    not_text.add(repr(constant.value))
                checked_callees.add(id(node.node))
        # Any other reference ({{ tracking_url(link) }}, an alias, a filter
        # argument) may ask for any name.
        unchecked = unchecked or any(
            isinstance(node, nodes.Name)
            and node.name == TRACKING_URL_FUNCTION
            and node.ctx == "load"
            and id(node) not in checked_callees
            for node in tree
        )
    return TrackingUrlUse(frozenset(names), frozenset(not_text), unchecked)


def _tracking_url_findings(mass_email: MassEmail, compiled: CompiledTemplate) -> list[Finding]:
    use = tracking_url_use(compiled)
    if not (use.names or use.not_text or use.unchecked):
        return []
    defined = tracking_link_ids(mass_email, compiled)
    known = ", ".join(sorted(defined)) or "none"
    findings = [
        Finding(
            "error",
            "unknown_tracking_url",
            f"tracking_url({name!r}): the campaign has no tracking URL of that name "
            f"(it has: {known}); the link would be empty",
        )
        for name in sorted(use.names - defined.keys())
    ]
    findings += [
        Finding(
            "error",
            "unknown_tracking_url",
            f"tracking_url({written}): a tracking URL's name is text, such as "
            f"tracking_url('promo'); the link would be empty",
        )
        for written in sorted(use.not_text)
    ]
    if use.unchecked:
        findings.append(
            Finding(
                "warning",
                "tracking_url_not_checked",
                "tracking_url is used without a constant name, so the name cannot be "
                "checked; an unknown name renders empty",
            )
        )
    return findings


# ------------------------------------------------------------------ audience


def _audience_findings(summary: AudienceSummary) -> list[Finding]:
    findings = [
        Finding(
            "info",
            "recipients",
            f"{summary.recipient:,} recipients after exclusions and suppressions",
            count=summary.recipient,
        ),
        Finding(
            "info",
            "excluded",
            f"{summary.excluded:,} removed by the excluding lists",
            count=summary.excluded,
        ),
        Finding(
            "info",
            "opted_out",
            f"{summary.opted_out:,} opted out of mass email, not sent",
            count=summary.opted_out,
        ),
        Finding(
            "info",
            "invalid_address",
            f"{summary.invalid_address:,} with an invalid address, not sent",
            count=summary.invalid_address,
        ),
        Finding(
            "info",
            "no_address",
            f"{summary.no_address:,} without an address, not sent",
            count=summary.no_address,
        ),
    ]
    if summary.recipient == 0:
        findings.insert(
            0,
            Finding(
                "error",
                "no_recipients",
                "nobody would receive this mass email after exclusions and suppressions",
                count=0,
            ),
        )
    return findings


# Placeholder → what makes it empty. ``contact_placeholders`` names a field
# by its key, in lower case and in upper case, a camelCase key also in
# snake_case; contact fields win over custom fields; FULL_NAME is first and
# last name unless a custom field gives it.
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_UNQUERYABLE_KEY = re.compile(r'["\\]')  # SQLite's JSON path cannot quote these


def _is_blank(value: SQLColumnExpression[Any]) -> ColumnElement[bool]:
    """NULL, blank text, or an empty JSON list: what renders empty."""
    return or_(value.is_(None), func.trim(value) == "", value == "[]")


def _custom_blank(key: str) -> ColumnElement[bool]:
    return _is_blank(Contact.custom_fields[key].as_string())


def _custom_key_candidates(name: str) -> set[str]:
    """The custom-field keys ``contact_placeholders`` would expose as
    ``name`` (a key is exposed as itself and as its snake_case in lower and
    in upper case): the name itself and, for a name in one letter case,
    its lower, upper, camelCase and PascalCase spellings."""
    candidates = {name}
    if name in (name.lower(), name.upper()):
        lower = name.lower()
        words = lower.split("_")
        camel = words[0] + "".join(word.capitalize() for word in words[1:])
        candidates |= {lower, name.upper(), camel, camel[:1].upper() + camel[1:]}
    return {key for key in candidates if name in _exposed_names(key)}


def _exposed_names(key: str) -> tuple[str, str, str]:
    snake_case = _CAMEL_HUMP.sub("_", key)
    return key, snake_case.lower(), snake_case.upper()


def placeholder_blank_condition(name: str) -> ColumnElement[bool]:
    """SQL true for a contact whose placeholder ``name`` renders empty."""
    for column in CONTACT_FIELDS:
        if name in (column, column.upper()):
            return _is_blank(getattr(Contact, column))
    keys = sorted(key for key in _custom_key_candidates(name) if not _UNQUERYABLE_KEY.search(key))
    custom_blank = and_(*(_custom_blank(key) for key in keys)) if keys else literal(True)
    if name in ("full_name", "FULL_NAME"):
        return and_(custom_blank, _is_blank(Contact.first_name), _is_blank(Contact.last_name))
    return custom_blank


def template_placeholders(
    compiled: CompiledTemplate,
) -> tuple[dict[str, ColumnElement[bool]], list[str]]:
    """The contact placeholders the content reads, each with its "renders
    empty" condition, labelled as ``render`` reports them (``FIRST_NAME``,
    ``custom['Key']``); and the labels of ``custom['…']`` keys SQLite's JSON
    path cannot quote (a quote or backslash), which cannot be checked."""
    conditions = {
        name: placeholder_blank_condition(name) for name in sorted(compiled.placeholder_names)
    }
    unchecked = []
    for key in sorted(compiled.custom_keys):
        label = f"custom[{key!r}]"
        if _UNQUERYABLE_KEY.search(key):
            unchecked.append(label)
        else:
            conditions[label] = _custom_blank(key)
    return conditions, unchecked


def empty_placeholder_findings(
    session: Session,
    target_list_ids: Sequence[int],
    excluding_list_ids: Sequence[int],
    compiled: CompiledTemplate,
) -> list[Finding]:
    """Per placeholder ``compiled`` reads, the recipients for whom it
    renders empty: one aggregate over the audience for all counts, then one
    ``LIMIT`` query per placeholder with empties for the example addresses."""
    conditions, unchecked = template_placeholders(compiled)
    findings = [
        Finding(
            "info",
            "placeholder_not_checked",
            f"{{{{ {label} }}}}: a key with a quote or backslash cannot be checked",
        )
        for label in unchecked
    ]
    if not conditions:
        return findings
    flags = [
        case((condition, 1), else_=0).label(f"p{index}")
        for index, condition in enumerate(conditions.values())
    ]
    audience = (
        audience_select(target_list_ids, excluding_list_ids)
        .add_columns(*flags)
        .subquery("audience")
    )
    is_recipient = audience.c.category == AudienceCategory.RECIPIENT.value
    counts = session.execute(
        select(*(func.coalesce(func.sum(audience.c[flag.name]), 0) for flag in flags)).where(
            is_recipient
        )
    ).one()
    for name, count, flag in zip(conditions, counts, flags, strict=True):
        if not count:
            continue
        examples = session.scalars(
            select(audience.c.email)
            .where(is_recipient, audience.c[flag.name] == 1)
            .order_by(audience.c.contact_id)
            .limit(EXAMPLES)
        ).all()
        findings.append(
            Finding(
                "warning",
                "empty_placeholder",
                f"{{{{ {name} }}}} renders empty for {count:,} recipients",
                count=int(count),
                examples=tuple(email for email in examples if email),
            )
        )
    return findings


# ------------------------------------------------------------------ spam score


def spam_score_finding(score: SpamScore) -> Finding:
    """SpamAssassin's verdict: a warning at or above its threshold."""
    rules = ", ".join(score.rules) or "none"
    if score.is_spam:
        return Finding(
            "warning",
            "spam_score",
            f"SpamAssassin scores the message {score.score:g}, at or above its threshold "
            f"{score.threshold:g} (rules: {rules})",
            examples=score.rules,
        )
    return Finding(
        "info",
        "spam_score",
        f"SpamAssassin scores the message {score.score:g} (threshold {score.threshold:g}; "
        f"rules: {rules})",
        examples=score.rules,
    )


def _skipped(why: str) -> Finding:
    return Finding("info", "spam_check_skipped", f"spam check skipped: {why}")


@dataclass(frozen=True)
class SpamCheck:
    """What the spam check needs beyond the mass email."""

    settings: Settings
    secret_key: str
    dkim_key: DkimKey | None
    command: str


def _spam_findings(
    session: Session,
    mass_email: MassEmail,
    runtime: RuntimeSettings,
    check: SpamCheck,
    clock: Clock,
) -> list[Finding]:
    """Score the message the first recipient would get (offline rules only)."""
    contact = default_preview_contact(session, mass_email.campaign)
    if contact is None or not contact.email:
        return [_skipped("there is no recipient to build a message for")]
    try:
        factory = MessageFactory.for_mass_email(
            session,
            mass_email,
            runtime=runtime,
            settings=check.settings,
            secret_key=check.secret_key,
            dkim_key=check.dkim_key,
        )
        message = factory.build(
            queue_item_id=TEST_QUEUE_ITEM_ID,
            contact=contact,
            to_address=contact.email,
            now=clock.now(),
        )
    except MessageError as error:
        return [Finding("warning", "spam_check_failed", f"the message cannot be built: {error}")]
    try:
        score = spam_score(message.data, command=check.command)
    except SpamCheckError as error:
        return [Finding("warning", "spam_check_failed", f"SpamAssassin failed: {error}")]
    if score is None:
        return [_skipped("SpamAssassin is not installed")]
    return [spam_score_finding(score)]


# ------------------------------------------------------------------ the check


def preflight(
    session: Session,
    mass_email: MassEmail,
    *,
    runtime: RuntimeSettings,
    settings: Settings,
    secret_key: str,
    clock: Clock,
    spam_check: bool = True,
    dkim_key: DkimKey | None = None,
    spamassassin: str = SPAMASSASSIN,
) -> list[Finding]:
    """Every finding for ``mass_email`` (see the module's rules), errors
    first, then warnings, then info. The spam check runs only when asked,
    and only once there are no errors (the message could not be built)."""
    campaign = mass_email.campaign
    policy = render_policy(runtime)
    profile = (
        None
        if campaign.sender_profile_id is None
        else session.get(SenderProfile, campaign.sender_profile_id)
    )
    findings = _sender_findings(profile) + _runtime_findings(runtime)
    content = _content(mass_email, policy)
    findings += content.findings
    if content.compiled is not None:
        findings += _opt_out_findings(content.compiled, policy)
        findings += _tracking_url_findings(mass_email, content.compiled)
    if content.source is not None:
        findings += _copy_findings(session, mass_email, content.source)
    findings += _recipient_findings(session, mass_email, content.compiled)
    if spam_check:
        if errors(findings):
            findings.append(_skipped("fix the errors first"))
        else:
            check = SpamCheck(settings, secret_key, dkim_key, spamassassin)
            findings += _spam_findings(session, mass_email, runtime, check, clock)
    return sorted(findings, key=lambda finding: SEVERITY_ORDER[finding.severity])


def _recipient_findings(
    session: Session, mass_email: MassEmail, compiled: CompiledTemplate | None
) -> list[Finding]:
    campaign = mass_email.campaign
    targets = [target.id for target in campaign.target_lists]
    excluding = [excluded.id for excluded in campaign.excluding_lists]
    if not targets:
        return [Finding("error", "no_target_list", "the campaign has no target list: choose one")]
    summary = resolve_audience(session, targets, excluding)
    findings = _audience_findings(summary)
    if compiled is not None and summary.recipient:
        findings += empty_placeholder_findings(session, targets, excluding, compiled)
    return findings
