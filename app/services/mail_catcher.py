"""The development mail catcher: an SMTP server (aiosmtpd) that accepts every
message and keeps it in a folder instead of delivering it.

``sluice run`` starts one on 127.0.0.1:1025 and points Sluice's SMTP at it,
so a developer can send campaigns without mailing anyone; the web app shows
what it caught at ``/dev/mail`` (``app.web.dev_mail``). The folder's format
and the reading side are in ``app.services.caught_mail``.

Rules:

- **Every recipient is accepted; nothing is relayed.** One stored file per
  message, however many RCPT TOs it had (they are in the envelope).
- **Bounded, so a runaway campaign cannot fill the disk:** a message over
  ``max_message_bytes`` is answered 552 (RFC 5321 §4.5.3.1.10; at MAIL FROM
  when the client declares ``SIZE=``, else after DATA) and not stored; past
  ``max_messages`` the oldest are deleted.
- **SMTPUTF8 and 8BITMIME** are offered (RFC 6531, RFC 6152): whatever
  Sluice sends must be caught as sent.
- **A message that cannot be stored** (disk full, folder gone) is answered
  451, so the sender keeps it and retries: nothing is lost silently.
- **The port is bound in** ``start()``, in the caller's thread: a port
  already in use is a ``MailCatcherError`` naming it at once, and port 0
  picks a free one (``.port`` tells which, for tests).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import socket
from collections.abc import Coroutine
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from app.clock import Clock, SystemClock
from app.services import caught_mail

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1025
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_MESSAGES = 5000
# The name the catcher gives itself in its greeting. Set, because aiosmtpd's
# default (the machine's FQDN) can wait on a DNS lookup.
SERVER_NAME = "sluice-mail-catcher.localhost"
CAUGHT_MAIL_FOLDER = "caught-mail"


class MailCatcherError(RuntimeError):
    """The catcher cannot start; the message says why (e.g. the port)."""


def default_directory(instance_path: Path) -> Path:
    """Where ``sluice run`` keeps caught mail: under the instance folder."""
    return instance_path / CAUGHT_MAIL_FOLDER


class _StoringHandler:
    """aiosmtpd handler: each message accepted after DATA goes to the folder."""

    def __init__(self, directory: Path, clock: Clock, max_messages: int) -> None:
        self.directory = directory
        self.clock = clock
        self.max_messages = max_messages
        # Only the server's event-loop thread calls handle_DATA: no lock needed.
        self._sequence = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        received = self.clock.now()
        message_id = caught_mail.new_message_id(received, next(self._sequence))
        stored_envelope = caught_mail.Envelope(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            mail_options=tuple(envelope.mail_options),
        )
        try:
            caught_mail.store_message(
                self.directory,
                message_id,
                envelope.original_content or b"",
                stored_envelope,
                received,
            )
            caught_mail.prune(self.directory, self.max_messages)
        except OSError:
            log.exception("mail catcher: cannot store a message in %s", self.directory)
            return "451 4.3.0 Requested action aborted: the catcher cannot store the message"
        return f"250 2.0.0 Ok: caught as {message_id}"


class _BoundController(Controller):
    """aiosmtpd's threaded controller serving a socket bound beforehand."""

    def __init__(self, handler: Any, listening: socket.socket, **smtp_options: Any) -> None:
        host, port = listening.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **smtp_options)
        self._listening = listening

    def _create_server(self) -> Coroutine[Any, Any, asyncio.AbstractServer]:
        # aiosmtpd's documented extension point; asyncio closes the socket
        # when the server closes.
        return self.loop.create_server(self._factory_invoker, sock=self._listening)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
    except socket.gaierror as error:
        raise MailCatcherError(f"mail catcher: cannot resolve host {host!r}: {error}") from None
    listening = socket.socket(family, kind, protocol)
    # As asyncio does for its own sockets: a restart need not wait for
    # connections in TIME_WAIT. A port with a live listener still refuses.
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
    except OSError as error:
        listening.close()
        if error.errno == errno.EADDRINUSE:
            raise MailCatcherError(
                f"mail catcher: port {port} on {host} is already in use "
                "(another catcher or mail server?); stop it or choose another port"
            ) from None
        raise MailCatcherError(
            f"mail catcher: cannot listen on {host} port {port}: {error.strerror}"
        ) from None
    listening.setblocking(False)
    return listening


class MailCatcher:
    """A development SMTP server that stores what it receives in ``directory``.

    Use ``start()``/``stop()`` or ``with MailCatcher(...) as catcher:``.
    """

    def __init__(
        self,
        directory: Path,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        clock: Clock | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_messages: int = DEFAULT_MAX_MESSAGES,
    ) -> None:
        if max_message_bytes < 1 or max_messages < 1:
            raise ValueError("max_message_bytes and max_messages must be at least 1")
        self.directory = directory
        self.host = host
        self.port = port
        self.clock = clock or SystemClock()
        self.max_message_bytes = max_message_bytes
        self.max_messages = max_messages
        self._controller: _BoundController | None = None

    @property
    def smtp_url(self) -> str:
        """The ``smtp_url`` setting that sends Sluice's mail here."""
        return f"smtp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Bind the port and serve in a background thread."""
        if self._controller is not None:
            raise MailCatcherError("mail catcher: already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        listening = _bind(self.host, self.port)
        handler = _StoringHandler(self.directory, self.clock, self.max_messages)
        controller = _BoundController(
            handler,
            listening,
            server_hostname=SERVER_NAME,
            data_size_limit=self.max_message_bytes,
            enable_SMTPUTF8=True,
        )
        try:
            controller.start()
        except Exception as error:
            # The loop may never have run; stopping is best effort.
            with suppress(RuntimeError):
                controller.stop(no_assert=True)
            listening.close()
            raise MailCatcherError(f"mail catcher: cannot start: {error}") from error
        self.port = controller.port
        self._controller = controller
        log.info("mail catcher on %s, storing in %s", self.smtp_url, self.directory)

    def stop(self) -> None:
        """Stop serving and release the port; a no-op when not running."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> MailCatcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
