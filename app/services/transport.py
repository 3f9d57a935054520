"""The SMTP relay behind a narrow interface.

``Transport.send(message, envelope_from, recipient) -> SendResult`` is all a
caller sees. The reply is classified once, here, into what the caller must do
with the message (RFC 5321 §4.2.1 reply classes):

- 2xx → ``accepted`` (the reply is kept: it holds the relay's queue id);
- 4xx, a dropped connection or a timeout → ``temporary`` (retry later);
- 5xx to RCPT → ``rejected_recipient`` (a hard bounce at send time);
- other 5xx (MAIL FROM, DATA) → ``rejected`` (the message failed; reply kept);
- an authentication failure → ``auth_failed`` (stop sending, tell a person).

Each result also says at which ``stage`` of the conversation the reply came
(connection, MAIL, RCPT or DATA): a reply before RCPT is the relay talking
about us, one to RCPT or DATA may be about the recipient (per-domain
pacing, ``app.services.pacing``, tells them apart).

One connection is opened lazily and reused for every message until ``close()``
or until the server drops it; it is never shared between threads. When the
relay offers PIPELINING (RFC 2920), MAIL, RCPT and DATA travel together:
two round trips a message instead of four, the same replies classified.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import re
import smtplib
import ssl
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_TIMEOUT_SECONDS = 30.0


class SmtpStage(enum.StrEnum):
    """Where in the conversation a reply came."""

    CONNECT = "connect"  # greeting, EHLO, STARTTLS, AUTH
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


class SendOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    TEMPORARY = "temporary"
    REJECTED_RECIPIENT = "rejected_recipient"
    REJECTED = "rejected"
    AUTH_FAILED = "auth_failed"


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    code: int | None  # SMTP reply code; None when no reply came (connection lost)
    reply: str
    stage: SmtpStage | None = None  # None: not from a conversation

    @property
    def accepted(self) -> bool:
        return self.outcome is SendOutcome.ACCEPTED


class Transport(Protocol):
    def send(self, message: bytes, envelope_from: str, recipient: str) -> SendResult: ...

    def close(self) -> None: ...


class Security(enum.StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS (smtps://, usually port 465)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security = Security.NONE
    username: str = ""
    password: str = ""
    timeout: float = DEFAULT_TIMEOUT_SECONDS


def parse_smtp_url(url: str) -> SmtpSettings:
    """``smtp://user:pass@host:587?starttls=1``, ``smtps://host`` (implicit TLS)
    or ``smtp://host:25``; ``timeout=SECONDS`` is optional. Raises
    ``ValueError`` with a message that never repeats the password."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError("SMTP URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("SMTP URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("SMTP URL has an invalid port") from None
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "timeout"}
    if unknown:
        raise ValueError(f"SMTP URL has unknown options: {', '.join(sorted(unknown))}")
    starttls = query.get("starttls", "0").lower() in {"1", "true", "yes", "on"}
    if parts.scheme == "smtps" and starttls:
        raise ValueError("SMTP URL: smtps:// is already TLS; drop starttls")
    security = (
        Security.TLS
        if parts.scheme == "smtps"
        else (Security.STARTTLS if starttls else Security.NONE)
    )
    try:
        timeout = float(query.get("timeout", DEFAULT_TIMEOUT_SECONDS))
    except ValueError:
        raise ValueError("SMTP URL: timeout must be a number of seconds") from None
    if not 0 < timeout <= 600:
        raise ValueError("SMTP URL: timeout must be between 0 and 600 seconds")
    return SmtpSettings(
        host=parts.hostname,
        port=port or (465 if security is Security.TLS else 25),
        security=security,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        timeout=timeout,
    )


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:1000]


def classify_reply(
    code: int, reply: bytes | str, at_recipient: bool, stage: SmtpStage | None = None
) -> SendResult:
    text = _reply_text(reply)
    if 200 <= code < 300:
        return SendResult(SendOutcome.ACCEPTED, code, text, stage)
    if 400 <= code < 500:
        return SendResult(SendOutcome.TEMPORARY, code, text, stage)
    outcome = SendOutcome.REJECTED_RECIPIENT if at_recipient else SendOutcome.REJECTED
    return SendResult(outcome, code, text, stage)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """One verifying client context per process (an ``SSLContext`` may be
    shared between threads)."""
    return ssl.create_default_context()


_LINE_START_DOT = re.compile(rb"(?m)^\.")

# A plain address needs no parsing to be put in angle brackets.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[^\s<>()\[\]\\,;:\"@]+")


def envelope_address(address: str) -> str:
    """``<address>`` for MAIL FROM or RCPT TO. ``smtplib.quoteaddr`` parses
    the address first (~12 µs, twice a message); a plain one is wrapped as
    it is, anything else still goes through it."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def data_block(message: bytes, dot_lines: bool = True) -> bytes:
    """The message as DATA sends it, as ``SMTP.data()`` does: a dot at a
    line's start doubled (RFC 5321 §4.5.2), then CRLF "." CRLF. A caller
    that knows no line starts with a dot (``dot_lines`` False) spares the
    scan of the whole message (~1 ns a byte)."""
    block = message
    if dot_lines and (block.startswith(b".") or b"\n." in block):  # cheaper than the regex
        block = _LINE_START_DOT.sub(b"..", block)
    if not block.endswith(b"\r\n"):
        block += b"\r\n"
    return block + b".\r\n"


class Transaction:
    """One message's MAIL, RCPT, DATA and body on an open connection: the
    bytes to send next and what each reply means (RFC 5321 §3.3, RFC 2920),
    without any I/O of its own. ``SmtpTransport.send`` drives it over
    smtplib's blocking socket, ``TransportPool`` over a non-blocking one, so
    both classify every reply alike.

    MAIL, RCPT, DATA by hand, not ``sendmail()``: that drops the final
    reply, which carries the relay's queue id, and merges the RCPT reply
    into an exception we would have to unpick. With PIPELINING the three
    commands go out in one write and their replies are read in order; the
    body follows only a 354: two round trips a message instead of four.
    ``stage`` follows the replies awaited, so a connection lost while
    waiting says where it was lost."""

    def __init__(
        self,
        message: bytes,
        envelope_from: str,
        recipient: str,
        *,
        pipelining: bool,
        dot_lines: bool = True,
    ) -> None:
        self.message = message
        self.dot_lines = dot_lines
        self.pipelining = pipelining
        self.commands = [
            (SmtpStage.MAIL, f"MAIL FROM:{envelope_address(envelope_from)}\r\n".encode("ascii")),
            (SmtpStage.RCPT, f"RCPT TO:{envelope_address(recipient)}\r\n".encode("ascii")),
            (SmtpStage.DATA, b"DATA\r\n"),
        ]
        self.replies: list[tuple[int, str]] = []
        self.stage = SmtpStage.MAIL  # of the reply awaited
        self.body_sent = False
        self.result: SendResult | None = None
        self.drop = False  # the connection cannot go on (421, DATA refused)
        self.reset = False  # a refused transaction: RSET before the next one

    def opening(self) -> bytes:
        """What to send first: all three commands when pipelining."""
        if self.pipelining:
            return b"".join(command for _, command in self.commands)
        return self.commands[0][1]

    def on_reply(self, code: int, text: str) -> bytes | None:
        """Take one reply; returns what to send next (``b""``: nothing, wait
        for the next reply), or None when the transaction is over
        (``result`` set)."""
        if self.body_sent:
            self._finish(classify_reply(code, text, False, SmtpStage.DATA))
            return None
        stage = self.commands[len(self.replies)][0]
        self.replies.append((code, text))
        if code == 421:  # the server is closing the channel (§3.8)
            self._finish(classify_reply(code, text, stage is SmtpStage.RCPT, stage))
            return None
        if not self.pipelining:
            refused = self._refusal(stage, code, text)
            if refused is not None:
                self._finish(refused)
                return None
        if len(self.replies) < len(self.commands):
            self.stage = self.commands[len(self.replies)][0]
            return b"" if self.pipelining else self.commands[len(self.replies)][1]
        return self._after_data()

    def _refusal(self, stage: SmtpStage, code: int, text: str) -> SendResult | None:
        if stage is SmtpStage.MAIL and code != 250:
            return classify_reply(code, text, False, SmtpStage.MAIL)
        if stage is SmtpStage.RCPT and code not in (250, 251):
            return classify_reply(code, text, True, SmtpStage.RCPT)
        return None

    def _after_data(self) -> bytes | None:
        (mail_code, mail_text), (rcpt_code, rcpt_text), (data_code, data_text) = self.replies
        refused = self._refusal(SmtpStage.MAIL, mail_code, mail_text) or self._refusal(
            SmtpStage.RCPT, rcpt_code, rcpt_text
        )
        if refused is not None:
            # Pipelined: a server that still took the DATA gets an empty
            # message ended at once (RFC 2920 §3.1), which it refuses for
            # want of recipients; its reply is not the message's.
            self.result, self.reset = refused, True
            if data_code == 354:
                self.body_sent, self.stage = True, SmtpStage.DATA
                return b".\r\n"
            return None
        if data_code != 354:  # as SMTP.data() raises: the session ends
            self._finish(classify_reply(data_code, data_text, False, SmtpStage.DATA), True)
            return None
        self.body_sent, self.stage = True, SmtpStage.DATA
        return data_block(self.message, self.dot_lines)

    def _finish(self, result: SendResult, drop: bool = False) -> None:
        if self.result is None:  # not the reply to an emptied DATA
            self.result = result
            self.drop = drop or result.code == 421
            self.reset = not result.accepted and not self.drop


class SmtpTransport:
    """A ``Transport`` over one reusable smtplib connection."""

    def __init__(self, settings: SmtpSettings, ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self._ssl_context = ssl_context
        self._connection: smtplib.SMTP | None = None
        self._stage = SmtpStage.CONNECT  # of the conversation under way

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The given context, else the system's default one, made only when
        TLS is used: loading the CA certificates takes ~35 ms, and the
        dispatcher makes a transport per connection per tick."""
        return self._ssl_context or default_ssl_context()

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        connection: smtplib.SMTP
        if settings.security is Security.TLS:
            connection = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout, context=self.ssl_context
            )
        else:
            connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        try:
            connection.ehlo()
            if settings.security is Security.STARTTLS:
                connection.starttls(context=self.ssl_context)
                connection.ehlo()
            if settings.username:
                connection.login(settings.username, settings.password)
        except BaseException:
            connection.close()
            raise
        return connection

    @property
    def connection(self) -> smtplib.SMTP | None:
        """The open connection, if any (``TransportPool`` drives its socket)."""
        return self._connection

    def open(self) -> SendResult | None:
        """Connect (greeting, EHLO, STARTTLS, AUTH) unless connected; None
        when the connection is ready, else the failure as ``send`` reports
        it."""
        self._stage = SmtpStage.CONNECT
        if self._connection is not None:
            return None
        try:
            self._connection = self._connect()
        except (smtplib.SMTPException, OSError) as error:
            return self._failure(error)
        return None

    def send(self, message: bytes, envelope_from: str, recipient: str) -> SendResult:
        failure = self.open()
        if failure is not None:
            return failure
        assert self._connection is not None
        try:
            transaction = self._transaction(self._connection, message, envelope_from, recipient)
        except (smtplib.SMTPException, OSError) as error:
            return self._failure(error)
        assert transaction.result is not None
        if transaction.drop:  # 421 (RFC 5321 §3.8) or DATA refused
            self.drop()
        elif transaction.reset:
            self._reset()
        return transaction.result

    def _failure(self, error: smtplib.SMTPException | OSError) -> SendResult:
        """An exception of the conversation as a result; the connection is
        dropped."""
        self.drop()
        if isinstance(error, smtplib.SMTPAuthenticationError):
            if 400 <= error.smtp_code < 500:
                # smtplib reports any refusal of AUTH this way; a 4xx (e.g.
                # 421 "too many connections", 454 RFC 4954 §6) is the relay
                # being busy, not wrong credentials: end the tick, pause
                # nothing.
                return classify_reply(error.smtp_code, error.smtp_error, False, SmtpStage.CONNECT)
            return SendResult(
                SendOutcome.AUTH_FAILED,
                error.smtp_code,
                _reply_text(error.smtp_error),
                SmtpStage.CONNECT,
            )
        if isinstance(error, smtplib.SMTPResponseException):
            # A reply that ends the session (e.g. 421 on connect or to DATA).
            return classify_reply(error.smtp_code, error.smtp_error, False, self._stage)
        # Dropped connection, timeout, refused connection, TLS failure:
        # nothing was accepted, so the message may be tried again.
        return SendResult(
            SendOutcome.TEMPORARY, None, _reply_text(str(error) or repr(error)), self._stage
        )

    def _transaction(
        self, connection: smtplib.SMTP, message: bytes, envelope_from: str, recipient: str
    ) -> Transaction:
        """Drive a ``Transaction`` over the blocking connection; ``_stage``
        follows it, so a reply smtplib raises still says where it came."""
        transaction = Transaction(
            message, envelope_from, recipient, pipelining=connection.has_extn("pipelining")
        )
        outgoing: bytes | None = transaction.opening()
        while outgoing is not None:
            if outgoing:
                connection.send(outgoing)
            self._stage = transaction.stage
            code, reply = connection.getreply()
            outgoing = transaction.on_reply(code, reply.decode("utf-8", "replace"))
        return transaction

    def _reset(self) -> None:
        """After a refused transaction the session goes on with RSET."""
        if self._connection is None:
            return
        try:
            self._connection.rset()
        except (smtplib.SMTPException, OSError):
            self.drop()

    def drop(self) -> None:
        """Close the connection without QUIT (it is broken or refused us)."""
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        if self._connection is None:
            return
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self._connection.quit()
        self.drop()
