"""Vendor knowledge: the same words mean different things from different
mail systems, so some rules hold only for the system that wrote them.

Two roles, named as in Sisimai (BSD-2), whose ``lhost`` and ``rhost``
modules these rules mirror (its labels are the corpus's labels):

* the **reporter** (Sisimai's "lhost"): the mail system or gateway that
  wrote the bounce, recognised by the bounce's own headers (From, Subject,
  Received, Message-ID, Content-Type) and the opening of its notice, the
  way each lhost module recognises its format. A reporter's notice may name
  the reason in its own words ("The user(s) account is disabled.").
* the **provider** (Sisimai's "rhost"): the mailbox provider or filtering
  service whose reply the bounce quotes, recognised by the recipient's
  domain, then the remote host, then the reporting host (Sisimai's
  ``rhost.Name``). Providers document their replies; a provider's rule
  decides before the generic table does ("550 : User unknown" is a
  content filter at au/KDDI, "550 <addr>: User unknown" a missing mailbox).

``vendor_reason`` applies the reporter's rules, then the provider's, and
returns a reason only when one of them names the case; everything else is
left to the generic table in ``bounce/classify.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bounce.mime import Headers

# --------------------------------------------------------------------------
# Reporters (Sisimai's lhost modules): who wrote the bounce.

EZWEB = "ezweb"
TRENDMICRO = "trendmicro"
VERIZON = "verizon"

_EZWEB_HOSTS = ("ezweb.ne.jp", "au.com")


def reporter_of(headers: Headers, notice: str) -> str | None:
    """The mail system that wrote the bounce, when its format is one the
    rules below know (``notice``: the bounce's own text parts)."""
    sender = (headers.get("from") or "").lower()
    content_type = headers.get("content-type") or ""
    # Trend Micro InterScan Messaging Security Suite (Sisimai lhost
    # TrendMicro): its MIME boundary, its From name, or its banner.
    if (
        "interscan" in sender
        or "InterScan" in content_type
        or "InterScan Messaging Security" in notice[:4096]
    ):
        return TRENDMICRO
    # Verizon's vtext gateway (Sisimai lhost Verizon): its sender addresses.
    if "post_master@vtext.com" in sender or ("sysadmin@" in sender and ".vzwpix.com" in sender):
        return VERIZON
    if _ezweb_signs(headers, sender) >= 2:
        return EZWEB
    return None


def _ezweb_signs(headers: Headers, sender: str) -> int:
    """au by KDDI's EZweb notices (Sisimai lhost EZweb): two of its sender,
    its subject, its Received line and its Message-ID."""
    signs = sum(f"postmaster@{host}" in sender for host in _EZWEB_HOSTS)
    if (headers.get("subject") or "").strip() == "Mail System Error - Returned Mail":
        signs += 1
    if any(
        "ezweb.ne.jp (EZweb Mail) with" in value or ".au.com (" in value
        for value in headers.get_all("received")
    ):
        signs += 1
    message_id = headers.get("message-id") or ""
    if message_id.rstrip().endswith((".ezweb.ne.jp>", ".au.com>")):
        signs += 1
    return signs


# The sentences in which a reporter's notice states the reason for every
# recipient it lists. The parser adds the sentence to each recipient's
# diagnostic, so the reason travels with the recipient.
NOTICE_SENTENCES: dict[str, tuple[str, ...]] = {
    # EZweb: the notice opens with the reason, the recipients follow.
    EZWEB: (
        "The user(s) account is disabled.",
        "The user(s) account is temporarily limited.",
        "The user(s) account is temporarily over quota",
        "Your message was not delivered within ",
        "Each of the following recipients was rejected by a remote mail server",
    ),
}


def notice_sentence(reporter: str | None, notice: str) -> str | None:
    """The reporter's own statement of the reason in its notice, if any."""
    for sentence in NOTICE_SENTENCES.get(reporter or "", ()):
        position = notice.find(sentence)
        if position >= 0:
            end = notice.find("\n", position)
            return notice[position : end if end >= 0 else None].strip()
    return None


# --------------------------------------------------------------------------
# Providers (Sisimai's rhost modules): whose reply the bounce quotes.

# Host name suffixes of each provider (Sisimai's RhostClass).
PROVIDER_HOSTS: dict[str, tuple[str, ...]] = {
    "aol": (".mail.aol.com", ".mx.aol.com"),
    "apple": (".mail.icloud.com", ".apple.com", ".me.com"),
    "cox": ("cox.net",),
    "franceptt": (".laposte.net", ".orange.fr", ".wanadoo.fr"),
    "godaddy": ("smtp.secureserver.net", "mailstore1.secureserver.net"),
    "gsuite": ("googlemail.com",),
    "kddi": (".ezweb.ne.jp", "msmx.au.com"),
    "messagelabs": (".messagelabs.com",),
    "nttdocomo": ("mfsmax.docomo.ne.jp",),
    "microsoft": (
        ".prod.outlook.com",
        ".protection.outlook.com",
        ".onmicrosoft.com",
        ".exchangelabs.com",
    ),
    "outlook": (".hotmail.com",),
    "yahooinc": (".yahoodns.net",),
}

_HOST_IN_TEXT = re.compile(r"\bhost\s+([a-z0-9][a-z0-9.-]*\.[a-z]{2,})\.?\s*\[", re.I)


def provider_of(
    recipient: str | None, remote_mta: str | None, reporting_mta: str | None, diagnostic: str
) -> str | None:
    """The provider whose rules apply (Sisimai's ``rhost.Name`` order): the
    recipient's domain first, then the remote host (the DSN's Remote-MTA or
    the host a Postfix/Exim text names), then the host that reported."""
    domain = recipient.rpartition("@")[2].lower() if recipient and "@" in recipient else ""
    if "." in domain:
        for provider, suffixes in PROVIDER_HOSTS.items():
            # A provider's own domain: one of its host names ends with it.
            if any(suffix == domain or suffix.endswith("." + domain) for suffix in suffixes):
                return provider
    named = _HOST_IN_TEXT.search(diagnostic)
    for host in (remote_mta, named.group(1) if named else None, reporting_mta):
        by_host = _provider_of_host(host)
        if by_host:
            return by_host
    return None


def _provider_of_host(host: str | None) -> str | None:
    if not host:
        return None
    name = host.strip().strip("[]().").lower().split()[0] if host.strip() else ""
    for provider, suffixes in PROVIDER_HOSTS.items():
        if name.endswith(suffixes):
            return provider
    return None


# --------------------------------------------------------------------------
# The rules: per vendor, reasons and the (lower-case) phrases that name
# them, tried in order. ``statuses``: the rule holds only with one of these
# enhanced status codes; ``reply``: only with this SMTP reply code.


@dataclass(frozen=True)
class VendorRule:
    reason: str
    phrases: tuple[str, ...]
    statuses: tuple[str, ...] = ()
    reply: str | None = None
    command: str | None = None


REPORTER_RULES: dict[str, tuple[VendorRule, ...]] = {
    # Sisimai lhost EZweb (au by KDDI's own notices).
    EZWEB: (
        VendorRule(
            "suspend",
            ("the user(s) account is disabled.", "the user(s) account is temporarily limited."),
        ),
        VendorRule("mailboxfull", ("the user(s) account is temporarily over quota",)),
        VendorRule("expired", ("your message was not delivered within ",)),
    ),
    # Sisimai lhost TrendMicro: InterScan writes "Unable to deliver message
    # to <addr>" only when the recipient's server refused the address.
    TRENDMICRO: (VendorRule("userunknown", ("unable to deliver message to",)),),
    # Sisimai lhost Verizon: the vtext gateway's refusal of a number.
    VERIZON: (
        VendorRule(
            "userunknown",
            ("550 - requested action not taken: no such user here", "no valid recipients"),
        ),
    ),
}

PROVIDER_RULES: dict[str, tuple[VendorRule, ...]] = {
    # Sisimai rhost Aol: AOL's relay reports a domain without a usable MX.
    "aol": (
        VendorRule("hostunknown", ("host or domain name not found",)),
        VendorRule("notaccept", ("type=mx: malformed or unexpected name server reply",)),
    ),
    # Sisimai rhost Apple (Apple's iCloud postmaster page, HT204137).
    "apple": (
        VendorRule("hasmoved", ("recipient no longer on server",)),
        VendorRule("mailboxfull", ("user is over quota",)),
        VendorRule("norelaying", ("relay access denied",)),
        VendorRule("notaccept", ("host/domain does not accept mail",)),
        VendorRule("rejected", ("sender address rejected",)),
        VendorRule(
            "userunknown",
            ("inactive email address", "user does not exist", "unknown or illegal alias"),
        ),
    ),
    # Sisimai rhost Cox (Cox's postmaster error codes): "recipient
    # rejected" is Cox's word for a recipient that is no Cox account.
    "cox": (
        VendorRule("rejected", ("sender rejected",)),
        VendorRule("userunknown", ("recipient rejected",)),
    ),
    # Sisimai rhost GoDaddy (GoDaddy's "Fix rejected email with a bounce
    # error" page).
    "godaddy": (
        VendorRule("suspend", ("account disabled",)),
        VendorRule("userunknown", ("recipient not found", "account does not exist")),
    ),
    # Sisimai rhost GSuite: Google's own notice when the address does not
    # exist (no remote reply is quoted).
    "gsuite": (
        VendorRule("notaccept", ("null mx",)),
        VendorRule(
            "userunknown",
            (
                "because the address couldn't be found. check for typos or unnecessary spaces "
                "and try again.",
            ),
        ),
    ),
    # Sisimai rhost KDDI (au's support page): "550 : User unknown" is au's
    # content filter refusing the sender, "550 <addr>: User unknown" a
    # missing mailbox.
    "kddi": (
        VendorRule("filtered", ("550 : user unknown",)),
        VendorRule("userunknown", (">: user unknown",)),
    ),
    # Sisimai rhost NTTDOCOMO (docomo.ne.jp's mfsmax): its refusal of an
    # unknown user after DATA is the recipient's reception filter or a
    # refused sender, at RCPT TO a missing mailbox.
    "nttdocomo": (
        VendorRule("userunknown", ("",), ("5.1.1", "5.0.911")),
        VendorRule("filtered", ("",), ("5.2.0",)),
        VendorRule("mailboxfull", ("552 too much mail data",)),
        VendorRule("toomanyconn", ("552 too many recipients",)),
        # Sisimai since March 2025 reads any "550 Unknown user" as a missing
        # mailbox; after DATA it is the reception filter's word (precision
        # first: the older rule, by the command it answered).
        VendorRule("userunknown", ("",), ("5.0.0",), command="RCPT"),
        VendorRule("rejected", ("",), ("5.0.0",), command="DATA"),
    ),
    # Sisimai rhost MessageLabs (Broadcom's Email Security.cloud knowledge
    # base: "No such user", "Invalid recipient", "Recipient mailbox is not
    # allowed"; its 542 reply refuses a recipient).
    "messagelabs": (
        VendorRule("securityerror", ("please turn on smtp authentication in your mail client",)),
        VendorRule(
            "rejected",
            (
                "sender envelope domain not allowed for sender ip address",
                "your envelope sender is in my badmailfrom list",
            ),
        ),
        VendorRule("userunknown", ("no such user", "invalid recipient", "mailbox is not allowed")),
        VendorRule("userunknown", ("rejected",), reply="542"),
    ),
    # Sisimai rhost Microsoft (Exchange Online's NDR reference): the codes
    # with the wording Microsoft documents for them.
    "microsoft": (
        VendorRule("suspend", ("recipient address rejected: access denied",), ("5.7.504",)),
        VendorRule("suspend", ("access denied, banned recipient",), ("5.7.505",)),
        VendorRule("suspend", ("mailbox cannot be accessed",), ("5.2.1",)),
        VendorRule("rejected", ("sender denied",), ("5.1.0",)),
        VendorRule("rejected", ("invalid address", "unknown sender address"), ("5.1.7",)),
        VendorRule("systemerror", ("destination mailbox address ambiguous",), ("5.1.4",)),
        VendorRule("systemerror", ("misconfigured forwarding address",), ("5.2.14",)),
        VendorRule("norelaying", ("does not exist",), ("5.4.310",)),
        VendorRule("networkerror", ("dns query failed",), ("4.4.312", "5.4.312")),
        VendorRule("hostunknown", ("smtpsend.dns.nonexistentdomain",), ("5.4.4",)),
        VendorRule("notaccept", ("hosted tenant which has no mail-enabled subscriptions",)),
        VendorRule(
            "userunknown", ("resolver.adr.exrecipnotfound; not found", "user unknown"), ("5.1.1",)
        ),
        VendorRule("userunknown", ("bad destination mailbox address",), ("5.1.1",)),
        VendorRule("userunknown", ("storedrv.submit; invalid recipient address",), ("5.1.3",)),
        VendorRule("userunknown", ("recipient not found",), ("5.1.10",)),
        VendorRule("userunknown", ("recipient address rejected: access denied",), ("5.4.1",)),
        VendorRule("userunknown", ("requested action not taken: mailbox unavailable",), ("5.5.0",)),
        VendorRule(
            "userunknown",
            ("remote server returned unknown recipient or mailbox unavailable",),
            ("5.1.351",),
        ),
    ),
    # Sisimai rhost Outlook (Outlook.com, the former Hotmail).
    "outlook": (
        VendorRule(
            "hostunknown",
            (
                "the mail could not be delivered to the recipient because the domain is not "
                "reachable",
            ),
        ),
        VendorRule("userunknown", ("requested action not taken: mailbox unavailable",)),
    ),
    # Sisimai rhost YahooInc (Yahoo's "SMTP error codes" page).
    "yahooinc": (
        VendorRule("suspend", (" is no longer valid.", "this mailbox is disabled")),
        VendorRule("userunknown", ("dd this user doesn't have a ", "mailbox not found")),
    ),
}


def vendor_reason(
    reporter: str | None,
    provider: str | None,
    diagnostic: str,
    status: str | None,
    reply: str | None,
    *,
    command: str | None = None,
) -> str | None:
    """The reason the reporter's rules, else the provider's, give for this
    (lower-case) diagnostic; None when neither names the case."""
    if provider == "franceptt":
        coded = _franceptt_reason(diagnostic)
        if coded:
            return coded
    for vendor, table in ((reporter, REPORTER_RULES), (provider, PROVIDER_RULES)):
        for rule in table.get(vendor or "", ()):
            if rule.statuses and status not in rule.statuses:
                continue
            if rule.reply and rule.reply != reply:
                continue
            if rule.command and rule.command != command:
                continue
            if any(phrase in diagnostic for phrase in rule.phrases):
                return rule.reason
    return None


# Orange and La Poste (Sisimai rhost FrancePTT, after the providers' error
# code lists): the number after the "LPN"/"OFR" label names the reason.
_FRANCEPTT_LABEL = re.compile(r"\b(?:lpnaaa|lpn|ofr|ouk)[0-9]*[-_]([0-9]{3})\b")
FRANCEPTT_CODES: dict[str, str] = {
    "101": "blocked",
    "102": "blocked",
    "103": "blocked",
    "104": "toomanyconn",
    "305": "securityerror",
    "401": "authfailure",
    "402": "securityerror",
    "403": "rejected",
    "405": "rejected",
    "415": "rejected",
    "416": "userunknown",  # Adresse d'au moins un destinataire invalide
    "417": "mailboxfull",  # Boite du destinataire pleine
    "420": "suspend",  # Boite du destinataire archivee
    "421": "rejected",
    "426": "suspend",  # Le compte du destinataire est bloque
    "505": "systemerror",
    "506": "spamdetected",
    "510": "blocked",
    "514": "mesgtoobig",
    "517": "authfailure",
    "630": "policyviolation",
    "999": "blocked",
}


def _franceptt_reason(diagnostic: str) -> str | None:
    found = _FRANCEPTT_LABEL.findall(diagnostic)
    return FRANCEPTT_CODES.get(found[-1]) if found else None
