"""The rule table: from a recipient's status code and error text to a reason
and a kind.

One table, read top to bottom (Sisimai's order of reasons, its "reason"
modules, BSD-2, were the model; the wording of each pattern comes from the
mail systems that print it):

1. ``STATUS_REASONS``: what an enhanced status code alone says (RFC 3463,
   RFC 5248 and the IANA "SMTP Enhanced Status Codes" registry).
2. ``TEXT_PATTERNS``: phrases of the error text, per reason, each list with
   the source of its phrases.
3. ``decide_reason``: the order in which the two are consulted. A status
   code is trusted unless the text contradicts it; a "no such user" text is
   trusted as an unknown user only when the reply answered ``RCPT TO`` (or
   the code says so), because filters after ``DATA`` reuse that wording for
   a message they refuse (Sisimai's ``filtered``).

Kind (SPEC §5, issue 7): **hard** for ``userunknown``, ``hostunknown``,
``hasmoved``, and ``notaccept`` unless the status is temporary (4.x.x);
every other reason of a bounce is **soft**. A false hard bounce suppresses
a good address, so a reason is only hard when the evidence says the address
itself is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from bounce import smtp, vendors
from bounce.report import BounceReport, RecipientReport, ReportKind

HARD_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved"})

# --------------------------------------------------------------------------
# 1. Enhanced status codes (RFC 3463 §3, RFC 5248, IANA registry
#    "SMTP Enhanced Status Codes"; RFC 7505 for null MX, RFC 7372 for the
#    authentication codes). Codes absent here say too little on their own.
STATUS_REASONS: dict[str, str] = {
    "2.1.5": "delivered",  # Destination address valid
    "4.1.6": "hasmoved",  # Mailbox has moved, no forwarding address
    "4.1.7": "rejected",  # Bad sender's mailbox address syntax
    "4.1.8": "rejected",  # Bad sender's system address
    "4.1.9": "systemerror",  # Message relayed to non-compliant mailer
    "4.2.1": "blocked",  # Mailbox disabled, not accepting messages
    "4.2.2": "mailboxfull",  # Mailbox full
    "4.2.3": "exceedlimit",  # Message length exceeds administrative limit
    "4.2.4": "filtered",  # Mailing list expansion problem
    "4.3.1": "systemfull",  # Mail system full
    "4.3.2": "notaccept",  # System not accepting network messages
    "4.3.3": "systemerror",  # System not capable of selected features
    "4.3.5": "systemerror",  # System incorrectly configured
    "4.4.1": "expired",  # No answer from host
    "4.4.2": "networkerror",  # Bad connection
    "4.4.3": "systemerror",  # Directory server failure
    "4.4.4": "networkerror",  # Unable to route
    "4.4.5": "systemfull",  # Mail system congestion
    "4.4.6": "networkerror",  # Routing loop detected
    "4.4.7": "expired",  # Delivery time expired
    "4.5.3": "systemerror",  # Too many recipients
    "4.5.5": "systemerror",  # Wrong protocol version
    "4.6.0": "contenterror",  # Other or undefined media error
    "4.6.2": "contenterror",  # Conversion required and prohibited
    "4.6.5": "contenterror",  # Conversion failed
    "4.7.1": "blocked",  # Delivery not authorized, message refused
    "4.7.2": "blocked",  # Mailing list expansion prohibited
    "4.7.5": "securityerror",  # Cryptographic failure
    "4.7.6": "securityerror",  # Cryptographic algorithm not supported
    "4.7.7": "securityerror",  # Message integrity failure
    "4.7.12": "securityerror",  # A password transition is needed (RFC 4954)
    "4.7.15": "securityerror",  # Priority level is too low (RFC 6710)
    "4.7.16": "mesgtoobig",  # Message too big for the priority (RFC 6710)
    "4.7.24": "authfailure",  # SPF validation error (RFC 7372)
    "4.7.25": "requireptr",  # Reverse DNS validation failed (RFC 7372)
    "4.7.26": "authfailure",  # Multiple authentication checks failed
    "5.1.0": "userunknown",  # Other address status
    "5.1.1": "userunknown",  # Bad destination mailbox address
    "5.1.2": "hostunknown",  # Bad destination system address
    "5.1.3": "userunknown",  # Bad destination mailbox address syntax
    "5.1.4": "filtered",  # Destination mailbox address ambiguous
    "5.1.6": "hasmoved",  # Mailbox has moved, no forwarding address
    "5.1.7": "rejected",  # Bad sender's mailbox address syntax
    "5.1.8": "rejected",  # Bad sender's system address
    "5.1.9": "systemerror",  # Message relayed to non-compliant mailer
    "5.1.10": "notaccept",  # Recipient address has null MX (RFC 7505)
    "5.2.0": "filtered",  # Other or undefined mailbox status
    "5.2.1": "filtered",  # Mailbox disabled, not accepting messages
    "5.2.2": "mailboxfull",  # Mailbox full
    "5.2.3": "exceedlimit",  # Message length exceeds administrative limit
    "5.2.4": "filtered",  # Mailing list expansion problem
    "5.3.0": "systemerror",  # Other or undefined mail system status
    "5.3.1": "systemfull",  # Mail system full
    "5.3.2": "notaccept",  # System not accepting network messages
    "5.3.3": "systemerror",  # System not capable of selected features
    "5.3.4": "mesgtoobig",  # Message too big for system
    "5.3.5": "systemerror",  # System incorrectly configured
    "5.4.0": "networkerror",  # Other or undefined network or routing status
    "5.4.3": "systemerror",  # Directory server failure
    "5.4.4": "hostunknown",  # Unable to route
    "5.5.2": "syntaxerror",  # Syntax error
    "5.5.3": "toomanyconn",  # Too many recipients
    "5.5.4": "systemerror",  # Invalid command arguments
    "5.5.5": "systemerror",  # Wrong protocol version
    "5.5.6": "syntaxerror",  # Authentication exchange line too long (RFC 4954)
    "5.6.0": "contenterror",  # Other or undefined media error
    "5.6.1": "contenterror",  # Media not supported
    "5.6.2": "contenterror",  # Conversion required and prohibited
    "5.6.3": "contenterror",  # Conversion required but not supported
    "5.6.5": "contenterror",  # Conversion failed
    "5.6.6": "contenterror",  # Message content not available (RFC 4468)
    "5.6.7": "contenterror",  # Non-ASCII addresses not permitted (RFC 6531)
    "5.6.8": "contenterror",  # UTF-8 string reply required (RFC 6531)
    "5.6.9": "contenterror",  # UTF-8 header cannot be transferred (RFC 6531)
    "5.7.0": "securityerror",  # Other or undefined security status
    "5.7.1": "securityerror",  # Delivery not authorized, message refused
    "5.7.2": "securityerror",  # Mailing list expansion prohibited
    "5.7.3": "securityerror",  # Security conversion required but not possible
    "5.7.4": "securityerror",  # Security features not supported
    "5.7.5": "securityerror",  # Cryptographic failure
    "5.7.6": "securityerror",  # Cryptographic algorithm not supported
    "5.7.7": "securityerror",  # Message integrity failure
    "5.7.8": "securityerror",  # Authentication credentials invalid
    "5.7.9": "securityerror",  # Authentication mechanism is too weak
    "5.7.10": "securityerror",  # Encryption needed
    "5.7.11": "securityerror",  # Encryption required for the mechanism
    "5.7.13": "suspend",  # User account disabled (RFC 4954)
    "5.7.14": "securityerror",  # Trust relationship required
    "5.7.15": "securityerror",  # Priority level is too low (RFC 6710)
    "5.7.16": "mesgtoobig",  # Message too big for the priority (RFC 6710)
    "5.7.17": "hasmoved",  # Mailbox owner has changed (RFC 7293)
    "5.7.18": "hasmoved",  # Domain owner has changed (RFC 7293)
    "5.7.19": "securityerror",  # RRVS test cannot be completed (RFC 7293)
    "5.7.20": "authfailure",  # No passing DKIM signature found (RFC 7372)
    "5.7.21": "authfailure",  # No acceptable DKIM signature found
    "5.7.22": "authfailure",  # No valid author-matched DKIM signature
    "5.7.23": "authfailure",  # SPF validation failed
    "5.7.24": "authfailure",  # SPF validation error
    "5.7.25": "requireptr",  # Reverse DNS validation failed
    "5.7.26": "authfailure",  # Multiple authentication checks failed
    "5.7.27": "notaccept",  # Sender address has null MX (RFC 7505)
    "5.7.28": "spamdetected",  # Mail flood detected (RFC 8689 registry)
    "5.7.29": "authfailure",  # ARC validation failure (RFC 8617)
    "5.7.30": "failedstarttls",  # REQUIRETLS support required (RFC 8689)
}

# --------------------------------------------------------------------------
# 2. Error-text phrases, lower case. "a*b" means "a", later "b". Sources:
#    the RFCs' wording, Sisimai's reason lists (which name the mail system
#    or provider of each phrase), and the providers' published bounce
#    documentation (Gmail, Microsoft 365, Yahoo, AOL, Apple iCloud).
TEXT_PATTERNS: dict[str, tuple[str, ...]] = {
    # Mailbox quota (RFC 3463 X.2.2 wording; Postfix/Dovecot/Courier
    # "quota exceeded"; Gmail "out of storage space"; Yahoo "over quota").
    "mailboxfull": (
        "mailbox full",
        "mailbox is full",
        "mailbox*full",
        "full mailbox",
        "mailfolder is full",
        "quota exceeded",
        "quota*exceeded",
        "over quota",
        "over*quota",
        "exceeded storage allocation",
        "mailbox size limit exceeded",
        "mailbox exceeds allowed size",
        "mailbox would exceed maximum allowed storage",
        "disk quota",
        "disk*quota",
        "maildir*quota",
        "mailbox*quota",
        "account is*quota",
        "quota violation",
        "user has exceeded quota",
        "not enough disk space",
        "not sufficient disk space",
        "insufficient disk space",
        "no space left on device",
        "user's space has been used up",
        "out of storage space",
        "user has too many messages on the server",
        "too much mail data",
        "boite du destinataire pleine",
        "mailbox*exceeded*limit",
        "enough * space",
        "account disabled temporarly for exceeding receiving limits",
    ),
    # Message size (RFC 3463 X.3.4, X.2.3; Postfix/Exim/Sendmail wording).
    "mesgtoobig": (
        "message size exceeds",
        "message too large",
        "message too big",
        "size limit",
        "message is too large",
        "message is too big",
        "exceeds size limit",
        "exceeded maximum message size",
        "message length exceeds",
        "mail size limit",
        "message file too big",
        "size of this message exceeds",
        "email is too large",
        "message size*exceeds",
        "exceeds the maximum message size",
        "message exceeds local size limit",
        "taille limite du message atteinte",
    ),
    # Per-sender or per-recipient limits (RFC 3463 X.2.3 usage).
    "exceedlimit": (
        "message header size exceeds limit",
        "message header size, or recipient list, exceeds",
        "too many recipients",
        "recipient limit",
        "exceeds the maximum number of recipients",
        "daily limit",
        "receiving limit exceeded",
    ),
    # Disabled or suspended mailboxes (Gmail "account ... is disabled",
    # Yahoo "user is terminated", Microsoft "mailbox is disabled").
    "suspend": (
        "is currently suspended",
        "temporary locked",
        "archived recipient",
        "boite du destinataire archivee",
        "email account that you tried to reach is disabled",
        "account that you tried to reach is inactive",
        "has been suspended",
        "inactive account",
        "invalid/inactive user",
        "is a deactivated mailbox",
        "user is terminated",
        "mailbox currently suspended",
        "mailbox disabled",
        "mailbox is frozen",
        "mailbox unavailable or access denied",
        "recipient rejected: temporarily inactive",
        "recipient suspend the service",
        "account has been disabled",
        "account is disabled",
        "account has been temporarily suspended",
        "this address no longer accepts mail",
        "this mailbox is disabled",
        "user or domain is disabled",
        "user suspended",
        "account is locked",
        "account disabled",
        "mailbox has been suspended",
        "account is inactive",
        "account has been deactivated",
    ),
    # Moved mailboxes (RFC 3463 X.1.6, RFC 7293).
    "hasmoved": (" has been replaced by ", "mailbox has moved", "address has moved"),
    # Relaying refused (RFC 5321 §3.6.1 wording; Sendmail "Relaying denied").
    "norelaying": (
        "as a relay",
        "insecure mail relay",
        "not permitted to relay",
        "no relaying",
        "not a gateway",
        "not allowed to relay",
        "not an open relay",
        "relay access denied",
        "relay denied",
        "relay not permitted",
        "relaying denied",
        "relaying mail to ",
        "specified domain is not allowed",
        "isn't in my list of allowed rcpthost",
        "not configured to relay mail",
        "unable to relay ",
        "we don't handle mail for",
        "requires authentication when attempting to send to a non-local",
    ),
    # SPF, DKIM, DMARC (RFC 7208, 6376, 7489; Gmail and Microsoft wording).
    "authfailure": (
        "//spf.pobox.com",
        "bad spf records",
        "dmarc policy",
        "dmarc reject",
        "required authentication level",
        "inspect your spf settings",
        "sender policy framework",
        "spf check: fail",
        "spf validation",
        "spf fail",
        "5322.from address doesn't meet the authentication",
        "is not allowed to send from <*per it's spf record",
        "unauthenticated email",
        "dkim signature",
        "failed dmarc",
    ),
    # The recipient's mailbox does not exist (RFC 3463 X.1.1 wording, and
    # the phrases of Postfix, Sendmail, Exim, qmail, Exchange, Gmail, Yahoo,
    # Outlook.com, Courier, Domino; Sisimai's UserUnknown list).
    "userunknown": (
        "user unknown",
        "unknown user",
        "no such user",
        "no such mailbox",
        "no such recipient",
        "no such person",
        "no such address",
        "unknown recipient",
        "recipient unknown",
        "unknown mailbox",
        "mailbox unknown",
        "address unknown",
        "unknown address",
        "invalid recipient",
        "invalid mailbox",
        "invalid address",
        "mailbox not found",
        "mailbox does not exist",
        "mailbox*does not exist",
        "user does not exist",
        "user*does not exist",
        "user not found",
        "user*was not found",
        "user not known",
        "user doesn't exist",
        "recipient does not exist",
        "recipient not found",
        "recipient*was not found in",
        "address does not exist",
        "address not present",
        "address not found",
        "no mailbox here by that name",
        "no mailbox by that name",
        "no account by that name",
        "not a valid mailbox",
        "not a valid recipient",
        "not a valid user",
        "is not a known user",
        "not a local address",
        "recipient address rejected: user unknown",
        "recipient address rejected: unknown user",
        "recipient address rejected: invalid user",
        "recipient address rejected: access denied",
        "recipient address rejected: userunknown",
        "recipient address rejected.",
        "mailbox unavailable",
        "mailbox is unavailable",
        "mailbox not present",
        "mailbox invalid",
        "mailbox is inactive",
        "user not active",
        "email account that you tried to reach does not exist",
        "no mailbox found",
        "the user's email name is not found",
        "there is no one at this address",
        "recipient is not accepted",
        "recipient is not local",
        "recipient not ok",
        "recipient refuses to accept your mail",
        "sorry, badrcptto",
        "badrecipientto list",
        "not in my validrcptto list",
        "your envelope recipient is in my badrcptto list",
        "your envelope recipient has been denied",
        "destination addresses were unknown",
        "email address could not be found",
        "email address does not exist",
        "address does not exist",
        "recipient not exist",
        "user not exist",
        "no such local user",
        "unknown local part",
        "unknown local*part",
        "non*existent user",
        "nonexistent",
        "non-existent",
        "this user doesn't have a * account",
        "resolver.adr.recipnotfound",
        "resolver.adr.recipient notfound",
        "the recipient name is not recognized",
        "user missing home directory",
        "invalid or unknown virtual user",
        "utilisateur inconnu",
        "no existe dicha persona",
        "no existe ese usuario",
        "nessun utente simile",
        "unknown e*mail address",
        "<*> not found",
        "rcpt <* does not exist",
        "rcpt (*t exist ",
        "account *does not exist",
        "user (*) unknown",
        "bad recipient",
        "addressee unknown",
        "does not exist.",
        "5.1.0 address rejected",
        "can't accept user",
        "weil die adresse nicht gefunden wurde oder keine e-mails empfangen kann",
    ),
    # Filters of the receiving mailbox (Sisimai's Filtered list: AOL,
    # Facebook, Willcom, AT&T, mail.ru, SendGrid).
    "filtered": (
        "account is protected by",
        "bounced address",
        "has restricted sms e-mail",
        "is not accepting any mail",
        "message rejected due to user rules",
        "not found recipient account",
        "refuse to receive mail",
        "only accepting mail from specific email addresses",
        "refused due to recipient preferences",
        "user refuses to receive this mail",
        "user reject",
        "you have been blocked by the recipient",
    ),
    # Reverse DNS (RFC 8601-era provider wording; Google, Yahoo, AOL).
    "requireptr": (
        "ip name lookup failed",
        "ptr record",
        "reverse dns",
        "cannot find your hostname",
        "cannot resolve your address",
        "ptr-record",
        "invalid rdns",
        "unverifyable sending ip",
        "unresolvable relay host name",
        "no reverse dns",
        "domain * mismatches client ip",
    ),
    # Messages not conforming to RFC 5322 (Gmail, Microsoft).
    "notcompliantrfc": (
        "this message is not rfc 5322 compliant",
        "rfc 5322 compliant",
        "duplicate headers",
        "multiple addresses in from",
        "headers are not rfc",
        "not compliant with rfc",
        "missing required header",
        "is not rfc-5322",
    ),
    # Sender IP reputation (Gmail, Microsoft, Yahoo wording).
    "badreputation": (
        "low reputation",
        "poor reputation",
        "ip reputation",
        "domain reputation",
        "sender reputation",
        "bad reputation",
        "reputation of the sending",
        "likely unsolicited mail",
        "has been temporarily rate limited due to ip reputation",
    ),
    # Content and header errors (RFC 3463 X.6.x).
    "contenterror": (
        "improper use of 8-bit data in message header",
        "message header size exceeds",
        "illegal attachment",
        "message contains invalid header",
        "header syntax",
        "message has been rejected because of the content",
        "bad content",
    ),
    # The sender's address refused (RFC 3463 X.1.7, X.1.8; Exim callout,
    # MessageLabs, BATV systems).
    "rejected": (
        "access denied (in reply to mail from command)",
        "access denied (sender blacklisted)",
        "sender address rejected",
        "domain of sender address",
        "sender rejected",
        "sender verify failed",
        "sender was rejected",
        "invalid sender",
        "sender not pre-approved",
        "empty envelope senders not allowed",
        "null sender is not allowed",
        "bogus mail from",
        "administrative prohibition",
        "batv failed",
        "batv validation failure",
        "backscatter protection",
        "returned mail not accepted here",
        "sender is spammer",
        "sender is in my black list",
        "sender address has been blacklisted",
        "your email address has been blacklisted",
        "unroutable sender address",
        "sender domain is empty",
        "mail from not owned by user",
        "you are not allowed to post to this mailing list",
        "fully qualified email address required",
        "email address is not verified",
        "this server does not accept mail from",
        "transaction failed unsigned dsn",
        "no third-party dsns",
        "does not exist e2110",
        "spam reporting address",
        "your access to submit messages to this e-mail system has been rejected",
    ),
    # The recipient's domain does not exist (RFC 3463 X.1.2; Exim
    # "Unrouteable address", Sendmail "Host unknown").
    "hostunknown": (
        "domain does not exist",
        "domain is not reachable",
        "domain must exist",
        "host or domain name not found",
        "host unknown",
        "host unreachable",
        "domain mentioned in email address is unknown",
        "name or service not known",
        "no such domain",
        "unknown domain",
        "the account or domain may not exist",
        "unknown host",
        "unroutable address",
        "unrouteable address",
        "553 * does not exist",
        "dns lookup failure: host",
    ),
    # Spam filters (Sisimai's SpamDetected list; SpamAssassin, Cyberoam,
    # MailMarshal, Earthlink, mail.ru, QQ, Gmail).
    "spamdetected": (
        " - spam",
        "appears to be unsolicited",
        "blacklisted url in message",
        "block for spam",
        "no spam please",
        "blocked by spamassassin",
        "detected as spam",
        "as spam",
        "unsolicited bulk e-mail",
        "content filter rejection",
        "identified this email as a bulk",
        "denied due to spam list",
        "high probability of spam",
        "classified as spam",
        "mail appears to be unsolicited",
        "mail content denied",
        "may consider spam",
        "spam or virus",
        "message content rejected",
        "message looks like spam",
        "seems to be a spam",
        "spamprofiler",
        "rejected as spam",
        "unacceptable content",
        "suspected spam",
        "message rejected for policy reasons",
        "possible spam",
        "thinks this email is spam",
        "probable spam",
        "reject bulk.advertising",
        "spamassassin score",
        "bulk email",
        "rejecting banned content",
        "rejecting mail content",
        "spam-like characteristics",
        "sender domain listed at ",
        "due to spam filter",
        "spam blocked",
        "spam check",
        "spam content",
        "spam detected",
        "spam email",
        "spam message",
        "spam not accepted",
        "spam refused",
        "spam rejection",
        "spam score",
        "identified spam",
        "spamming not allowed",
        "spam complaints",
        "too much spam",
        "looked like spam",
        "appears to be spam",
        "identified as spam",
        "scored as spam",
        "recurrent pattern detection",
        "we dont accept spam",
        "similar to spam",
        "uribl",
        "had spam-like",
        "considered spam",
        "probably spam",
        "triggered a spam",
        "spam contents",
        "antispam checks",
        "message filtered",
        "rejected due to spam",
        "spam points",
        "mail score (* over ",
    ),
    # Too many connections or messages (RFC 3463 X.4.5 usage; Gmail,
    # Yahoo, Microsoft throttling wording).
    "toomanyconn": (
        "too many connections",
        "too many simultaneous connections",
        "too many concurrent",
        "connection limit",
        "too many smtp sessions",
        "exceeded the maximum number of connections",
    ),
    "speeding": (
        "rate limit",
        "ratelimit",
        "rate-limit",
        "receiving mail at a rate that prevents",
        "too many messages",
        "sending too fast",
        "temporarily deferred due to unexpected volume",
        "has exceeded the max emails per hour",
        "throttl",
        "try again later, closing connection",
    ),
    # The connecting host refused (DNSBLs, dynamic IPs, HELO checks).
    "blocked": (
        " said: 550 blocked",
        "//www.spamcop.net/bl.",
        "bad sender ip address",
        "banned sending ip",
        "blacklisted by",
        "blocked using ",
        "blocked - see http",
        "dnsbl",
        "helo command rejected",
        "client host rejected",
        "confirm this mail server",
        "connection dropped",
        "connection refused by",
        "connection reset by peer",
        "connection was dropped by remote",
        "spamhaus",
        "currently sending spam",
        "dynamic/zombied/spam ips blocked",
        "esmtp not accepting connections",
        "extreme bad ip profile",
        "go away",
        "host network not allowed",
        "hosts with dynamic ip",
        "invalid ip for sending mail",
        "is in a black list",
        "is not allowed to send mail from",
        "no access from mail server",
        "not currently accepting mail from your ip",
        "on our block list",
        "please use the smtp server of your isp",
        "refused - see http",
        "multi-blacklist",
        "has not passed validation",
        "rejecting open proxy",
        "sender ip address rejected",
        "server access forbidden by your ip",
        "service not available, closing transmission",
        "after initial connection",
        "suspiciously like spammer",
        "too many spams from your ip",
        "too many unwanted messages have been sent from the following ip",
        "was blocked by ",
        "from dynamic ips",
        "you are not allowed to connect",
        "you are sending spam",
        "listed in the rbl",
        "temporary blacklisted",
        "your server requires confirmation",
        "access from ip address * blocked",
        "blocked by rbl",
        "is blacklisted",
        "rejected based on blacklist",
        "listed as abusive",
        "your access ip*has been rejected",
        ".abuseat.org",
        "is blocked by earthlink",
        "barracudacentral",
        "rbl on ",
        "blocked by",
    ),
    "virusdetected": (
        "virus",
        "infected",
        "malware",
        "this message was blocked because its content presents",
    ),
    "policyviolation": (
        "an illegal attachment",
        "because the recipient is not accepting mail with",
        "by non-member to a members-only list",
        "closed mailing list",
        "denied by policy",
        "not accepted for policy reasons",
        "rejected due to security policies",
        "header are not accepted",
        "header error",
        "local policy violation",
        "due to organizational settings",
        "message given low priority",
        "message rejected due to local policy",
        "messages with multiple addresses",
        "rejected for policy reasons",
        "protocol violation",
        "is not subscribed to this group",
        "rejected by organization policy",
        "containing images or other attachments",
        "you're using a mass mailer",
        "allowable number of posts without solving a captcha",
    ),
    "systemerror": (
        "aliasing/forwarding loop broken",
        "can't create user output file",
        "could not load drd for domain",
        "internal error",
        "internal server error",
        "interrupted system call",
        "encountered an error while being processed",
        "would create a mail loop",
        "local configuration error",
        "local error in processing",
        "loop was found in the mail exchanger",
        "loops back to myself",
        "mail system configuration error",
        "queue file write error",
        "there is no mdb",
        "server is misconfigured",
        "server configuration error",
        "service currently unavailable",
        "system config error",
        "temporary local problem",
        "timeout waiting for input",
        "transaction failed ",
        "unable to connect * daemon",
        "system error",
    ),
    "networkerror": (
        "could not connect and send the mail to",
        "dns records for the destination computer could not be found",
        "hop count exceeded",
        "host is unreachable",
        "host name lookup failure",
        "host not found, try again",
        "mail forwarding loop for ",
        "name server reply",
        "maximum forwarding loop count exceeded",
        "message looping",
        "routing loop",
        "no route to host",
        "too many hops",
        "unable to resolve route ",
        "unrouteable mail domain",
    ),
    "systemfull": (
        "mail system full",
        "system storage",
        "disk full",
        "insufficient system storage",
    ),
    "notaccept": (
        "does not accept mail",
        "mail receiving disabled",
        "name server: .: host not found",
        "no mx record found for domain=",
        "no route for current request",
        "smtp protocol returned a permanent error",
        "indicated no smtp service",
        "null mx",
    ),
    "expired": (
        "connection timed out",
        "could not find a gateway for",
        "delivery attempts will continue",
        "delivery expired",
        "delivery time expired",
        "failed to deliver to domain ",
        "giving up on",
        "have been failing for a long time",
        "has been delayed",
        "not been collected after",
        "expired after sitting in queue",
        "message expired",
        "message timed out",
        "retry time not reached for any host after a long failure period",
        "server did not respond",
        "in the queue too long",
        "after multiple retries",
        "not reachable within the allowed queue period",
        "could not be delivered for more than",
        "could not be delivered for * days",
        "retry timeout exceeded",
        "queue period",
    ),
    "failedstarttls": (
        "starttls is required",
        "must issue a starttls",
        "tls required",
        "requiretls",
        "tls negotiation failed",
        "encryption required",
    ),
    "securityerror": (
        "authentication failed",
        "authentication required",
        "authentication credentials invalid",
        "user not authenticated",
        "must be authenticated",
        "authentication is required",
        "insecure",
        "security policy",
        "tls is required",
    ),
    "suppressed": ("suppression list", "on the suppression list", "address is suppressed"),
    "mailererror": (
        "x-unix;",
        "command failed:",
        "exit code",
        "procmail",
        "mail filter failed",
        "pipe to |",
        "command died with status",
        "unknown mailer error",
    ),
    "syntaxerror": ("syntax error", "command unrecognized", "unrecognized command"),
    "vacation": ("i am away", "out of the office", "out of office", "on vacation"),
}


# Wording of the mailbox's own mail system that names an unknown mailbox
# whatever the SMTP stage (Sisimai's lhost modules for these systems):
# Exchange 2000/2003 NDRs, Lotus Domino and Notes, IMail, mail.local,
# Verizon's MMS gateway, Yahoo's "dd" replies, La Poste (LPN007_416).
DEFINITE_USERUNKNOWN: tuple[str, ...] = (
    "the recipient name is not recognized",
    "not listed in domino directory",
    "not listed in public name & address book",
    "unknown user: ",
    "invalid final delivery userid",
    "mail.local: unknown user",
    "no valid recipients for this mm",
    "delivery error: dd this user doesn't have",
    "destinataire invalide. invalid recipient",
    "resolver.adr.recipientnotfound",
    "recipient not found by smtp address lookup",
    # Exchange Online's directory-based edge blocking: no such recipient.
    "5.4.1 recipient address rejected: access denied",
)


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    parts = [".*?".join(re.escape(piece) for piece in pattern.split("*")) for pattern in patterns]
    return re.compile("|".join(parts), re.S)


_MATCHERS: dict[str, re.Pattern[str]] = {
    reason: _compile(patterns) for reason, patterns in TEXT_PATTERNS.items()
}
_MATCHERS["definite-userunknown"] = _compile(DEFINITE_USERUNKNOWN)


def says(reason: str, text: str) -> bool:
    """True when the lower-case ``text`` has one of ``reason``'s phrases."""
    return bool(text) and _MATCHERS[reason].search(text) is not None


# --------------------------------------------------------------------------
# 3. The order of the rules (after Sisimai's reason.Find).


@dataclass(frozen=True)
class Evidence:
    """What one failed recipient's report says."""

    status: str | None
    diagnostic: str  # lower case
    command: str | None = None
    action: str | None = None
    reply: str | None = None
    diagnostic_type: str | None = None
    hint: str | None = None  # a reason a format detector is sure of
    vendor: str | None = None  # the reason a vendor's own rule gives (bounce.vendors)


# RFC 3464 §2.3.6 diagnostic types other than SMTP that a parser keeps as
# the diagnostic's prefix (``X-Unix; ...``: a local delivery program).
DIAGNOSTIC_TYPES = frozenset({"X-UNIX", "X-POSTFIX", "X-LOCAL", "X-NOTES", "X400"})

# A reply to one of these commands refused the recipient (or the sender, or
# the connection) before any content was sent: a content filter cannot
# have been the cause (RFC 5321 §3.3).
BEFORE_CONTENT = smtp.BEFORE_DATA

# fmt: off
# Reasons a status code or the text can name outright, in the order they
# are tried (Sisimai's first pass).
FIRST_PASS = (
    "mailboxfull", "mesgtoobig", "exceedlimit", "suspend", "hasmoved", "norelaying",
    "authfailure", "userunknown", "filtered", "requireptr", "notcompliantrfc", "badreputation",
    "contenterror", "rejected", "hostunknown", "spamdetected", "speeding", "toomanyconn",
    "blocked",
)
# Phrases tried when neither the code nor a first-pass rule decided.
SECOND_PASS = (
    "mailboxfull", "authfailure", "badreputation", "speeding", "spamdetected", "virusdetected",
    "policyviolation", "norelaying", "systemerror", "networkerror", "suspend", "contenterror",
    "systemfull", "notaccept", "expired", "failedstarttls", "securityerror", "suppressed",
    "mailererror",
)
# Reasons of a status code that the text may refine.
VAGUE_REASONS = frozenset(
    {"", "systemerror", "securityerror", "expired", "networkerror", "hostunknown", "userunknown"}
)
# A "user unknown" code contradicted by these phrases is not an unknown user.
USERUNKNOWN_CONTRADICTIONS = (
    "norelaying", "blocked", "mailboxfull", "hasmoved", "rejected", "notaccept", "filtered",
)
# Replies to these commands refused the sender or the connection, never the
# recipient's mailbox (RFC 5321 §4.1.1: RCPT TO names the recipient).
NOT_ABOUT_RECIPIENT = frozenset({"CONN", "EHLO", "HELO", "MAIL", "STARTTLS", "AUTH"})
# fmt: on


def _first_pass(reason: str, ev: Evidence, coded: str) -> bool:
    """Does ``reason`` hold? Its own rule if it has one (``_RULES``), else
    "the code names it or the text says it"."""
    rule = _RULES.get(reason)
    if rule is not None:
        return rule(ev, coded)
    return coded == reason or says(reason, ev.diagnostic)


def _filtered(ev: Evidence, coded: str) -> bool:
    """A mailbox-level refusal after the content was seen (Sisimai's
    "filtered"): a 5.2.x code or a "no such user" text that did not answer
    a command sent before DATA."""
    text = ev.diagnostic
    if coded == "filtered":
        return says("userunknown", text) or says("filtered", text)
    if ev.command in BEFORE_CONTENT:
        return False
    return says("filtered", text) or says("userunknown", text)


def _suspend(ev: Evidence, coded: str) -> bool:
    return ev.reply == "525" or says("suspend", ev.diagnostic)  # RFC 4954 §4.7: 525


def _no_relaying(ev: Evidence, coded: str) -> bool:
    return ev.command not in ("CONN", "EHLO", "HELO") and says("norelaying", ev.diagnostic)


def _host_unknown(ev: Evidence, coded: str) -> bool:
    if coded == "hostunknown":
        return not says("networkerror", ev.diagnostic)  # a DNS failure is not a bad domain
    return says("hostunknown", ev.diagnostic)


def _spam_detected(ev: Evidence, coded: str) -> bool:
    if coded == "spamdetected":
        return True
    if not ev.status or ev.command in BEFORE_CONTENT:
        return False
    return says("spamdetected", ev.diagnostic)


def _user_unknown(ev: Evidence, coded: str) -> bool:
    """Unknown mailbox: the code says so and the text does not contradict
    it; or the reply to RCPT TO says so; or the mailbox's own system says
    so in its own words; or an addressing code (RFC 3463 X.1.Y) that the
    table does not name comes with a "no such user" text."""
    text = ev.diagnostic
    if ev.command in NOT_ABOUT_RECIPIENT:
        return False
    if coded == "userunknown":
        return not _contradicted(text)
    if says("definite-userunknown", text):
        return True
    if ev.command == "RCPT" and says("userunknown", text):
        return True
    addressing = (ev.status or "").startswith("5.1.") and coded in ("", "notaccept")
    return addressing and says("userunknown", text) and not _contradicted(text)


def _contradicted(text: str) -> str:
    """The reason whose phrases contradict a "user unknown" code, or ""."""
    for other in USERUNKNOWN_CONTRADICTIONS:
        if says(other, text):
            return other
    return ""


def _rejected(ev: Evidence, coded: str) -> bool:
    if coded == "rejected":
        return True
    text = ev.diagnostic
    if "recipient address rejected" in text or "5.1.0 address rejected" in text:
        return False
    if ev.command == "MAIL" or (ev.command == "DATA" and coded != "userunknown"):
        return says("rejected", text)
    if coded in ("", "securityerror", "systemerror"):
        return says("rejected", text)
    return False


_RULES: dict[str, Callable[[Evidence, str], bool]] = {
    "userunknown": _user_unknown,
    "filtered": _filtered,
    "suspend": _suspend,
    "norelaying": _no_relaying,
    "rejected": _rejected,
    "hostunknown": _host_unknown,
    "spamdetected": _spam_detected,
}


def decide_reason(ev: Evidence) -> str:
    """The reason of one failed recipient (Sisimai's order, see module doc)."""
    if ev.hint and ev.hint not in ("undefined", "onhold"):
        return ev.hint
    if ev.action == "delivered" or (ev.status or "").startswith("2."):
        return "delivered"
    if ev.vendor:
        # Sisimai's order: the reporter's (lhost) and the provider's (rhost)
        # rules decide before the generic table.
        return ev.vendor
    coded = STATUS_REASONS.get(ev.status or "", "")
    if ev.diagnostic_type in (None, "SMTP"):
        for reason in FIRST_PASS:
            if _first_pass(reason, ev, coded):
                return reason
    reason = _second_pass(ev, coded)
    if reason:
        return reason
    if ev.action == "delayed":
        return "expired"
    if says("vacation", ev.diagnostic):
        return "vacation"
    return "onhold" if ev.diagnostic else "undefined"


def _second_pass(ev: Evidence, coded: str) -> str:
    if coded == "userunknown" and _contradicted(ev.diagnostic):
        return _contradicted(ev.diagnostic)
    if coded not in VAGUE_REASONS and ev.diagnostic_type in (None, "SMTP"):
        return coded
    for reason in SECOND_PASS:
        if says(reason, ev.diagnostic):
            return reason
    if coded:
        return coded
    status = ev.status or ""
    if status[:3] in ("5.6", "4.6"):
        return "contenterror"
    if status[:3] in ("5.7", "4.7"):
        return "securityerror"
    if (ev.diagnostic_type or "").startswith("X-UNIX"):
        return "mailererror"
    if says("syntaxerror", ev.diagnostic):
        return "syntaxerror"
    if ev.action in ("delayed", "expired"):
        return "expired"
    if ev.command in ("EHLO", "HELO"):
        return "blocked"
    return ""


def kind_of(reason: str, status: str | None) -> ReportKind | None:
    """Hard or soft (see the module doc); None for a delivery report."""
    if reason == "delivered":
        return None
    if reason == "feedback":
        return ReportKind.COMPLAINT
    if reason == "vacation":
        return ReportKind.AUTOREPLY
    if reason in HARD_REASONS:
        return ReportKind.HARD
    if reason == "notaccept":
        return ReportKind.SOFT if (status or "").startswith("4.") else ReportKind.HARD
    return ReportKind.SOFT


def implied_command(diagnostic: str) -> str | None:
    """The command named in the text, or implied by a reply only given to
    it (Postfix's "Recipient address rejected" answers RCPT TO)."""
    named = smtp.find_command(diagnostic)
    if named:
        return named
    lowered = diagnostic.lower()
    if "[rcpt_to]" in lowered:  # Yahoo's tag of the command it answered
        return "RCPT"
    return None


def classify_recipient(
    item: RecipientReport,
    hint: str | None = None,
    reporter: str | None = None,
    reporting_mta: str | None = None,
) -> RecipientReport:
    """One recipient with its reason and kind filled in. ``reporter`` and
    ``reporting_mta`` (from the report) select the vendor rules."""
    diagnostic = item.diagnostic or ""
    kind, separator, _ = diagnostic.partition(";")
    diagnostic_type = (
        kind.strip().upper() if separator and kind.strip().upper() in DIAGNOSTIC_TYPES else None
    )
    lowered = diagnostic.lower()
    reply = smtp.reply_code(diagnostic)
    command = item.command or implied_command(diagnostic)
    provider = vendors.provider_of(item.recipient, item.remote_mta, reporting_mta, lowered)
    evidence = Evidence(
        status=item.status,
        diagnostic=lowered,
        command=command,
        action=item.action,
        reply=reply,
        diagnostic_type=diagnostic_type,
        hint=hint or item.reason,
        vendor=vendors.vendor_reason(
            reporter, provider, lowered, item.status, reply, command=command
        )
        if diagnostic
        else None,
    )
    reason = decide_reason(evidence)
    return replace(item, reason=reason, kind=kind_of(reason, item.status))


def classify(report: BounceReport) -> BounceReport:
    """A copy of ``report`` with each recipient's reason and kind, and the
    top-level fields taken from the first failed recipient.

    Complaints and auto-replies keep the kind the parser recognised; a
    message that is not a bounce keeps no kind."""
    if report.kind in (ReportKind.COMPLAINT, ReportKind.AUTOREPLY):
        return report
    if not report.is_bounce:
        return report
    recipients = tuple(
        classify_recipient(item, reporter=report.reporter, reporting_mta=report.reporting_mta)
        for item in report.recipients
    )
    failed = [item for item in recipients if item.kind is not None]
    if not failed:
        return replace(
            report, recipients=recipients, is_bounce=False, kind=None, reason="delivered"
        )
    first = failed[0]
    return replace(
        report,
        recipients=recipients,
        kind=first.kind,
        reason=first.reason,
        recipient=first.recipient,
        status=first.status,
        diagnostic=first.diagnostic,
    )
