"""The bounce mailbox over IMAP (IMAPClient): connect, read new messages,
acknowledge each one after its result is committed. Pure: no Flask, no
database; the caller's handler applies a message and stores the checkpoint.

Rules (docs/bounce-poller.md tells the whole story):

- **Transport security.** ``imaps://`` is implicit TLS (RFC 8314 §3.2);
  ``imap://`` upgrades with STARTTLS whenever the server offers it (RFC 3501
  §6.2.1) and is refused in plain text unless the server is this machine
  (``localhost``, ``127.0.0.1``, ``::1``): a password never crosses a
  network in the clear. Certificates are verified.
- **Reading never marks.** Messages are fetched with ``BODY.PEEK[]``
  (RFC 3501 §6.4.5: PEEK does not set ``\\Seen``), in batches of
  ``batch_size``; a message larger than ``max_message_bytes`` is not
  downloaded at all.
- **The checkpoint.** ``Checkpoint(uidvalidity, last_uid)`` comes from the
  caller and goes back through the handler, which stores it in the same
  transaction as the message's result. The folder normally holds only
  messages not yet acknowledged; one at or below ``last_uid`` is a result
  committed whose move never happened (the poller stopped in between): it
  is handed to the handler again, which counts it once (its record is
  unique per Message-ID and content hash), so that it can be moved.
- **Acknowledge after commit.** The handler applies the message, commits
  and says where it goes: ``Processed`` or ``Unparsed``. Only then is it
  moved there (MOVE, RFC 6851; or COPY, ``\\Deleted`` and ``UID EXPUNGE``
  of those UIDs only, RFC 4315 §2.1), a batch's messages together once all
  of them are committed (one round trip per batch and folder: a MOVE costs
  Dovecot several milliseconds). Nothing is ever deleted outright; the two
  folders are created when missing.
- **One bad message never stops the batch.** A handler that raises (or a
  message too large to read) has the error recorded through ``on_error``
  and the message moved to ``Unparsed`` for a person to look at. Only a
  handler raising ``StopPoll`` (the database is down: the message is not at
  fault) stops the poll and leaves the message where it is.
- **UIDVALIDITY** (RFC 3501 §2.3.1.1). When the folder's UIDVALIDITY is not
  the checkpoint's, the old UIDs mean nothing: the whole folder is read
  again from UID 1 (logged), which the handler's deduplication makes safe.
- **Connection loss.** A dropped connection, a timeout or a refused
  connect is retried after an exponential back-off (``backoff_base``
  doubling up to ``backoff_max``), reconnecting and resuming from the
  checkpoint; ``max_reconnects`` failures in a row without progress end the
  poll with the error in ``PollStats.error``. A refused login, a missing
  folder or a certificate that does not verify is not retried.
"""

from __future__ import annotations

import enum
import imaplib
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

log = logging.getLogger(__name__)

# Hosts a password may be sent to in plain text: the connection never
# leaves this machine.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
DEFAULT_PORTS = {"imap": 143, "imaps": 993}
DEFAULT_FOLDER = "INBOX"
DEFAULT_BATCH_SIZE = 50
DEFAULT_TIMEOUT_SECONDS = 60.0
# Bounces are small; a larger message is not downloaded at all (kept in
# Unparsed for a person) rather than held in memory.
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
DELETED = b"\\Deleted"


class MailboxError(Exception):
    """The mailbox cannot be polled; the message says why, never the password."""


class MailboxConfigError(MailboxError, ValueError):
    """The IMAP URL is malformed, or would send the password in plain text."""


class StopPoll(Exception):
    """Raised by a handler when the message is not at fault (the database is
    unreachable): the poll stops and the message stays for the next one."""


class Folder(enum.Enum):
    """Where an acknowledged message goes (created when missing)."""

    PROCESSED = "Processed"
    UNPARSED = "Unparsed"


class Security(enum.StrEnum):
    TLS = "implicit TLS"
    STARTTLS = "STARTTLS"
    PLAIN = "plain text (local server)"


@dataclass(frozen=True)
class MailboxUrl:
    """``imaps://user:password@host:port/FOLDER`` parsed. ``key`` names the
    mailbox without its password (what the database and the logs keep)."""

    scheme: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    folder: str

    @property
    def key(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = quote(self.username, safe="")
        return f"{self.scheme}://{user}@{host}:{self.port}/{quote(self.folder)}"

    @property
    def is_local(self) -> bool:
        return self.host.lower() in LOCAL_HOSTS


def parse_imap_url(url: str) -> MailboxUrl:
    """Parse ``imap[s]://user:password@host[:port][/FOLDER]``; the folder
    defaults to INBOX, user and password are percent-decoded. Raises
    ``MailboxConfigError`` with a message that never repeats the password."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS:
        raise MailboxConfigError("the IMAP URL must start with imaps:// or imap://")
    if not parts.hostname:
        raise MailboxConfigError("the IMAP URL has no host")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise MailboxConfigError("the IMAP URL has an invalid port") from None
    if not parts.username or parts.password is None:
        raise MailboxConfigError("the IMAP URL needs a user and a password (imaps://user:pass@…)")
    if parts.query or parts.fragment:
        raise MailboxConfigError("the IMAP URL takes no query or fragment")
    folder = unquote(parts.path.lstrip("/")) or DEFAULT_FOLDER
    return MailboxUrl(
        parts.scheme,
        parts.hostname,
        port,
        unquote(parts.username),
        unquote(parts.password),
        folder,
    )


@dataclass(frozen=True)
class Checkpoint:
    """How far the folder was read: its UIDVALIDITY and the highest UID
    whose result is committed. ``uidvalidity`` None: never read."""

    uidvalidity: int | None = None
    last_uid: int = 0


@dataclass(frozen=True)
class FetchedMessage:
    """One message as read. ``raw`` is empty when it was too large to read
    (``size`` over the mailbox's ``max_message_bytes``)."""

    uid: int
    raw: bytes
    size: int


# Apply the message and store the checkpoint in one transaction, commit,
# and say where the message goes.
Handler = Callable[[FetchedMessage, Checkpoint], Folder]
# Record why a message could not be handled (and the checkpoint past it).
ErrorRecorder = Callable[[FetchedMessage, Checkpoint, str], None]
Sleeper = Callable[[float], None]


@dataclass
class PollStats:
    """What one poll did. ``error`` is set when the poll ended early."""

    checkpoint: Checkpoint
    processed: int = 0  # moved to Processed
    unparsed: int = 0  # moved to Unparsed by the handler's decision
    failed: int = 0  # the handler raised or the message was too large → Unparsed
    again: int = 0  # at or below the checkpoint: committed before, moved now
    reconnects: int = 0
    rescanned: bool = False  # UIDVALIDITY changed: the folder was read from UID 1
    errors: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def handled(self) -> int:
        return self.processed + self.unparsed + self.failed

    def describe(self) -> str:
        parts = [
            f"{self.processed} processed",
            f"{self.unparsed} unparsed",
            f"{self.failed} failed",
        ]
        if self.again:
            parts.append(f"{self.again} committed earlier and moved now")
        if self.reconnects:
            parts.append(f"{self.reconnects} reconnect(s)")
        if self.rescanned:
            parts.append("UIDVALIDITY changed: folder read again from UID 1")
        return ", ".join(parts)


def is_connection_loss(error: BaseException) -> bool:
    """A failure worth reconnecting for: the network or the server went
    away (EOF, reset, timeout, refused). A certificate that does not verify
    will not verify on the next try either."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    return isinstance(error, OSError | imaplib.IMAP4.abort | EOFError)


def server_text(error: BaseException) -> str:
    """The server's own words (or the socket's), for logs and the admin.
    IMAPClient passes server replies as bytes: ``b'[AUTHENTICATIONFAILED]
    …'`` is shown as the server wrote it."""
    text = str(error).strip() or type(error).__name__
    text = re.sub(r"""\bb(['"])(.*?)\1""", r"\2", text)
    return " ".join(text.split())[:1000]


class Mailbox:
    """One IMAP connection to the bounce folder (see the module's rules)."""

    def __init__(
        self,
        url: MailboxUrl,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.url = url
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self.security: Security | None = None
        self.uidvalidity: int | None = None
        self._client: IMAPClient | None = None
        self._folders: dict[Folder, str] = {}
        self._existing: set[str] = set()

    # ------------------------------------------------------------ connection

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise MailboxError("not connected")
        return self._client

    def open(self) -> IMAPClient:
        """Connect with the transport security the rules demand; the client
        is not logged in yet. Raises ``MailboxConfigError`` for a plain-text
        connection to another machine."""
        context = self.ssl_context or ssl.create_default_context()
        if self.url.scheme == "imaps":
            client = IMAPClient(
                self.url.host, self.url.port, ssl=True, ssl_context=context, timeout=self.timeout
            )
            self.security = Security.TLS
        else:
            client = IMAPClient(self.url.host, self.url.port, ssl=False, timeout=self.timeout)
            if client.has_capability("STARTTLS"):
                client.starttls(context)
                self.security = Security.STARTTLS
            elif self.url.is_local:
                self.security = Security.PLAIN
            else:
                _close_quietly(client)
                raise MailboxConfigError(
                    f"{self.url.host} does not offer STARTTLS: refusing to send the password "
                    "in plain text (use imaps://, or a server on this machine)"
                )
        self._client = client
        return client

    def connect(self) -> int:
        """Connect, log in, select the folder; return its UIDVALIDITY."""
        client = self.open()
        client.login(self.url.username, self.url.password)
        self._folders = _folder_names(client)
        self._existing = set()
        selected = client.select_folder(self.url.folder)
        self.uidvalidity = int(selected[b"UIDVALIDITY"])
        return self.uidvalidity

    def close(self) -> None:
        if self._client is not None:
            _close_quietly(self._client)
            self._client = None

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ reading

    def uids(self) -> list[int]:
        """Every UID in the selected folder, ascending."""
        return sorted(int(uid) for uid in self.client.search("ALL"))

    def batches(self, uids: list[int]) -> Iterator[list[FetchedMessage]]:
        """The messages of ``uids`` in UID order, ``batch_size`` at a time,
        read with ``BODY.PEEK[]``; one gone meanwhile is skipped, one over
        ``max_message_bytes`` comes without its bytes."""
        for start in range(0, len(uids), self.batch_size):
            yield self._fetch_batch(uids[start : start + self.batch_size])

    def _fetch_batch(self, batch: list[int]) -> list[FetchedMessage]:
        sizes = {
            int(uid): int(data[b"RFC822.SIZE"])
            for uid, data in self.client.fetch(batch, ["RFC822.SIZE"]).items()
        }
        readable = [uid for uid in batch if 0 <= sizes.get(uid, -1) <= self.max_message_bytes]
        bodies = {}
        if readable:
            bodies = {
                int(uid): bytes(data[b"BODY[]"])
                for uid, data in self.client.fetch(readable, ["BODY.PEEK[]"]).items()
                if b"BODY[]" in data
            }
        return [
            FetchedMessage(uid, bodies.get(uid, b""), sizes[uid])
            for uid in batch
            if uid in bodies or (uid in sizes and uid not in readable)
        ]

    # ------------------------------------------------------------ acknowledging

    def ack(self, uids: list[int], folder: Folder) -> None:
        """Move ``uids`` out of the polled folder into ``folder``: MOVE when
        offered (RFC 6851), else COPY + ``\\Deleted`` + ``UID EXPUNGE`` of
        these UIDs only (RFC 4315 §2.1). Without UIDPLUS the copies are kept
        and the originals only flagged: a plain EXPUNGE would also remove
        what someone else flagged, and nothing is deleted on the poller's
        word."""
        client = self.client
        target = self._folders.get(folder, folder.value)
        self._ensure_folder(target)
        if client.has_capability("MOVE"):
            client.move(uids, target)
            return
        client.copy(uids, target)
        client.add_flags(uids, [DELETED], silent=True)
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)
        else:
            log.warning(
                "%s offers neither MOVE nor UIDPLUS: %d message(s) copied to %s and "
                "left flagged \\Deleted",
                self.url.key,
                len(uids),
                target,
            )

    def _ensure_folder(self, name: str) -> None:
        if name in self._existing:
            return
        client = self.client
        if not client.folder_exists(name):
            try:
                client.create_folder(name)
            except IMAPClientError:
                # Another poller may have created it a moment ago.
                if not client.folder_exists(name):
                    raise
        self._existing.add(name)

    # ------------------------------------------------------------ the loop

    def poll(
        self,
        handler: Handler,
        checkpoint: Checkpoint,
        *,
        on_error: ErrorRecorder,
        sleeper: Sleeper = time.sleep,
        max_reconnects: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ) -> PollStats:
        """Handle every message of the folder, then acknowledge it; reconnect
        on connection loss (see the module's rules). Never raises for the
        mailbox's sake: a poll that ended early says why in ``error``."""
        stats = PollStats(checkpoint)
        failures = 0
        while True:
            handled_before = stats.handled + stats.again
            try:
                self.close()
                self.connect()
                self._read_folder(handler, on_error, stats)
                return stats
            except StopPoll as stop:
                stats.error = f"stopped: {server_text(stop)}"
                return stats
            except Exception as error:
                if not is_connection_loss(error):
                    stats.error = _describe_failure(error)
                    return stats
                failures = 0 if stats.handled + stats.again > handled_before else failures
                failures += 1
                if failures > max_reconnects:
                    stats.error = (
                        f"connection lost {failures} time(s) in a row: {server_text(error)}"
                    )
                    return stats
                delay = min(backoff_max, backoff_base * 2 ** (failures - 1))
                log.warning(
                    "%s: connection lost (%s); reconnecting in %.1f s",
                    self.url.key,
                    server_text(error),
                    delay,
                )
                stats.reconnects += 1
                sleeper(delay)
            finally:
                self.close()

    def _read_folder(self, handler: Handler, on_error: ErrorRecorder, stats: PollStats) -> None:
        uidvalidity = self.uidvalidity
        if stats.checkpoint.uidvalidity not in (None, uidvalidity):
            log.warning(
                "%s: UIDVALIDITY changed from %s to %s; reading the whole folder again "
                "(messages seen before count once)",
                self.url.key,
                stats.checkpoint.uidvalidity,
                uidvalidity,
            )
            stats.rescanned = True
            stats.checkpoint = Checkpoint(uidvalidity, 0)
        elif stats.checkpoint.uidvalidity is None:
            stats.checkpoint = Checkpoint(uidvalidity, 0)
        committed_before = stats.checkpoint.last_uid
        for batch in self.batches(self.uids()):
            self._handle_batch(batch, committed_before, handler, on_error, stats)

    def _handle_batch(
        self,
        batch: list[FetchedMessage],
        committed_before: int,
        handler: Handler,
        on_error: ErrorRecorder,
        stats: PollStats,
    ) -> None:
        """Handle each message (each committed by the handler), then move
        them with one command per folder: a round trip per batch instead of
        one per message. A handler stopping the poll still has the messages
        committed before it moved."""
        outcomes: dict[int, Folder | None] = {}
        stop: StopPoll | None = None
        for message in batch:
            checkpoint = Checkpoint(self.uidvalidity, max(stats.checkpoint.last_uid, message.uid))
            try:
                outcomes[message.uid] = self._handle(message, checkpoint, handler, on_error, stats)
            except StopPoll as error:
                stop = error
                break
            stats.checkpoint = checkpoint
        for folder in Folder:
            uids = [
                uid for uid, outcome in outcomes.items() if (outcome or Folder.UNPARSED) is folder
            ]
            if uids:
                self.ack(uids, folder)
            for uid in uids:
                _count(stats, outcomes[uid], again=uid <= committed_before)
        if stop is not None:
            raise stop

    def _handle(
        self,
        message: FetchedMessage,
        checkpoint: Checkpoint,
        handler: Handler,
        on_error: ErrorRecorder,
        stats: PollStats,
    ) -> Folder | None:
        """The handler's folder; None when it failed (→ Unparsed, recorded)."""
        if message.size > self.max_message_bytes:
            problem = (
                f"message UID {message.uid} is {message.size} bytes, over the limit of "
                f"{self.max_message_bytes}: not read"
            )
        else:
            try:
                return handler(message, checkpoint)
            except StopPoll:
                raise
            except Exception as error:
                log.exception("%s: message UID %s failed", self.url.key, message.uid)
                problem = f"message UID {message.uid}: {type(error).__name__}: {error}"
        stats.errors.append(problem)
        on_error(message, checkpoint, problem)
        return None


def _count(stats: PollStats, folder: Folder | None, *, again: bool) -> None:
    if again:
        stats.again += 1
    if folder is None:
        stats.failed += 1
    elif folder is Folder.PROCESSED:
        stats.processed += 1
    else:
        stats.unparsed += 1


def _folder_names(client: IMAPClient) -> dict[Folder, str]:
    """Processed and Unparsed where the server keeps a user's folders: under
    the personal namespace's prefix (RFC 2342; ``INBOX.`` on some servers)."""
    prefix = ""
    if client.has_capability("NAMESPACE"):
        personal = client.namespace().personal
        if personal:
            prefix = str(personal[0][0])
    return {folder: prefix + folder.value for folder in Folder}


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, MailboxConfigError):
        return str(error)
    return f"{type(error).__name__}: {server_text(error)}"


def _close_quietly(client: IMAPClient) -> None:
    """Log out politely; a connection already gone is simply dropped."""
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception:
            log.debug("closing an IMAP connection that was already gone", exc_info=True)


@dataclass
class ConnectionReport:
    """What "test connection" found, step by step, for the admin UI and
    ``sluice bounces test-connection``: the server's greeting and
    capabilities, the login, the folder and its message count, or the
    step that failed with the server's exact words."""

    mailbox: str  # the URL without its password
    security: str = ""
    greeting: str = ""
    capabilities: tuple[str, ...] = ()
    logged_in: bool = False
    folder: str = ""
    folder_exists: bool = False
    message_count: int | None = None
    uidvalidity: int | None = None
    failed_step: str = ""  # connect, login or folder
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed_step

    def lines(self) -> list[str]:
        lines = [f"Mailbox: {self.mailbox}"]
        if self.greeting:
            lines.append(f"Greeting: {self.greeting}")
        if self.security:
            lines.append(f"Connection: {self.security}")
        if self.capabilities:
            lines.append(f"Capabilities: {' '.join(self.capabilities)}")
        if self.logged_in:
            lines.append("Login: accepted")
        if self.folder_exists:
            lines.append(
                f"Folder {self.folder}: {self.message_count} message(s), "
                f"UIDVALIDITY {self.uidvalidity}"
            )
        if self.failed_step:
            lines.append(f"Failed at {self.failed_step}: {self.error}")
        return lines


def probe(
    url: MailboxUrl,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> ConnectionReport:
    """Connect, log in and look at the folder without changing anything
    (read-only EXAMINE). Never raises: a failure is the report's
    ``failed_step`` and ``error``."""
    report = ConnectionReport(url.key, folder=url.folder)
    mailbox = Mailbox(url, ssl_context=ssl_context, timeout=timeout)
    step = "connect"
    try:
        client = mailbox.open()
        report.security = mailbox.security.value if mailbox.security else ""
        report.greeting = _text(client.welcome)
        step = "login"
        client.login(url.username, url.password)
        report.logged_in = True
        report.capabilities = tuple(_text(item) for item in client.capabilities())
        step = "folder"
        if not client.folder_exists(url.folder):
            raise MailboxError(f"the folder {url.folder!r} does not exist")
        report.folder_exists = True
        selected = client.select_folder(url.folder, readonly=True)
        report.message_count = int(selected[b"EXISTS"])
        report.uidvalidity = int(selected[b"UIDVALIDITY"])
    except Exception as error:
        report.failed_step = step
        report.error = server_text(error) if not isinstance(error, MailboxError) else str(error)
    finally:
        mailbox.close()
    return report


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
