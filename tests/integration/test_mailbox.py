"""The bounce mailbox (``bounce.mailbox``) against a real Dovecot: reading
in batches without marking, acknowledging into Processed/Unparsed after
the handler committed, the checkpoint, UIDVALIDITY, lost connections, TLS.

The handler here is ``Store``: the database side in memory (a result per
Message-ID and content hash, the checkpoint stored by the same "commit"),
so these tests pin down what the poller does around it.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from bounce.mailbox import (
    Checkpoint,
    FetchedMessage,
    Folder,
    Mailbox,
    MailboxConfigError,
    PollStats,
    Security,
    StopPoll,
    parse_imap_url,
    probe,
)
from tests.conftest import service_missing
from tests.dovecot import PASSWORD, DovecotServer, find_dovecot, free_port, start_dovecot
from tests.tcp_proxy import cutting_proxy

SEEN = b"\\Seen"


def message(number: int, *, body: bytes = b"", size: int = 0) -> bytes:
    text = (
        f"From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: bounces+{number}.abc@bounce.example.com\r\n"
        f"Subject: Undelivered Mail Returned to Sender {number}\r\n"
        f"Message-ID: <bounce-{number}@mx.example.net>\r\n"
        f"\r\n"
        f"Delivery to recipient {number} failed.\r\n"
    ).encode()
    padding = b"x" * 76 + b"\r\n"
    return text + body + padding * (size // len(padding))


def number_of(raw: bytes) -> int:
    found = re.search(rb"Message-ID: <bounce-(\d+)@", raw)
    assert found is not None
    return int(found.group(1))


@dataclass
class Store:
    """The database side in memory. ``handle`` applies a message once per
    (Message-ID, content hash) and stores the checkpoint with it, as one
    commit; a message whose body says "unparseable" goes to Unparsed and
    one that says "explode" makes the handler raise."""

    counted: dict[tuple[int, str], int] = field(default_factory=dict)
    handled: list[int] = field(default_factory=list)
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    errors: list[str] = field(default_factory=list)
    stop_at: int | None = None
    die_after_commit_at: int | None = None

    def handle(self, fetched: FetchedMessage, checkpoint: Checkpoint) -> Folder:
        number = number_of(fetched.raw)
        if number == self.stop_at:
            raise StopPoll("database unreachable")
        if b"explode" in fetched.raw:
            raise ValueError("the parser choked")
        key = (number, hashlib.sha256(fetched.raw).hexdigest())
        self.counted[key] = 1  # a unique constraint: seen twice, counted once
        self.handled.append(number)
        self.checkpoint = checkpoint  # committed together with the result
        if number == self.die_after_commit_at:
            self.die_after_commit_at = None
            raise SystemExit("killed between commit and move")
        return Folder.UNPARSED if b"unparseable" in fetched.raw else Folder.PROCESSED

    def record_error(self, fetched: FetchedMessage, checkpoint: Checkpoint, problem: str) -> None:
        self.errors.append(problem)
        self.checkpoint = checkpoint

    def poll(self, mailbox: Mailbox, **options: object) -> PollStats:
        stats = mailbox.poll(
            self.handle,
            self.checkpoint,
            on_error=self.record_error,
            **options,  # type: ignore[arg-type]
        )
        return stats


@pytest.fixture
def user(dovecot: DovecotServer) -> str:
    return dovecot.new_user()


def mailbox_for(
    dovecot: DovecotServer, user: str, folder: str = "INBOX", **options: object
) -> Mailbox:
    return Mailbox(parse_imap_url(dovecot.url(user, folder)), **options)  # type: ignore[arg-type]


def numbers(bodies: list[bytes]) -> list[int]:
    return sorted(number_of(body) for body in bodies)


class Sleeps(list[float]):
    """An injected sleeper: records each back-off instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# ---------------------------------------------------------------- reading and moving


def test_new_messages_are_read_in_batches_and_moved_to_processed_unread(
    dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(n) for n in range(1, 8)])
    store = Store()

    stats = store.poll(mailbox_for(dovecot, user, batch_size=3))

    assert stats.error == ""
    assert store.handled == [1, 2, 3, 4, 5, 6, 7]  # UID order, across 3 batches
    assert stats.processed == 7
    assert dovecot.contents(user, "INBOX") == {}
    processed = dovecot.contents(user, "Processed")
    assert numbers([body for body, _ in processed.values()]) == [1, 2, 3, 4, 5, 6, 7]
    # BODY.PEEK[] never set \Seen: a person browsing the folder sees them new.
    assert all(SEEN not in flags for _, flags in processed.values())
    assert store.checkpoint == Checkpoint(dovecot.uidvalidity(user), 7)
    assert stats.checkpoint == store.checkpoint


def test_what_the_handler_cannot_use_goes_to_unparsed(dovecot: DovecotServer, user: str) -> None:
    dovecot.append(user, [message(1), message(2, body=b"unparseable\r\n"), message(3)])
    store = Store()

    stats = store.poll(mailbox_for(dovecot, user))

    assert (stats.processed, stats.unparsed, stats.failed) == (2, 1, 0)
    assert numbers(dovecot.bodies(user, "Processed")) == [1, 3]
    assert numbers(dovecot.bodies(user, "Unparsed")) == [2]


def test_the_checkpoint_carries_from_one_poll_to_the_next(
    dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(1), message(2)])
    store = Store()
    store.poll(mailbox_for(dovecot, user))
    dovecot.append(user, [message(3), message(4), message(5)])

    stats = store.poll(mailbox_for(dovecot, user))

    assert store.handled == [1, 2, 3, 4, 5]
    assert (stats.processed, stats.again, stats.rescanned) == (3, 0, False)
    assert store.checkpoint.last_uid == 5
    assert numbers(dovecot.bodies(user, "Processed")) == [1, 2, 3, 4, 5]


def test_a_poller_killed_between_commit_and_move_moves_it_next_time_counted_once(
    dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(n) for n in range(1, 6)])
    store = Store(die_after_commit_at=4)

    with pytest.raises(SystemExit):
        store.poll(mailbox_for(dovecot, user, batch_size=3))

    # The first batch was moved; messages 4's result is committed (with the
    # checkpoint), but its batch was not moved.
    assert store.checkpoint.last_uid == 4
    assert numbers(dovecot.bodies(user, "Processed")) == [1, 2, 3]
    assert numbers(dovecot.bodies(user, "INBOX")) == [4, 5]

    stats = store.poll(mailbox_for(dovecot, user, batch_size=3))

    assert stats.again == 1  # message 4, handed over again to learn its folder
    assert len(store.counted) == 5
    assert dovecot.contents(user, "INBOX") == {}
    assert numbers(dovecot.bodies(user, "Processed")) == [1, 2, 3, 4, 5]  # one copy each


def test_one_bad_message_never_stops_the_batch(dovecot: DovecotServer, user: str) -> None:
    garbage = b"\xff\xfe garbage without headers"
    dovecot.append(user, [message(1), message(2, body=b"explode\r\n"), garbage, message(4)])
    store = Store()

    stats = store.poll(mailbox_for(dovecot, user))

    assert stats.error == ""
    assert (stats.processed, stats.failed) == (2, 2)
    assert numbers(dovecot.bodies(user, "Processed")) == [1, 4]
    unparsed = dovecot.bodies(user, "Unparsed")
    assert len(unparsed) == 2
    assert garbage in unparsed
    assert any("ValueError: the parser choked" in error for error in store.errors)
    assert store.checkpoint.last_uid == 4  # the failures are behind the checkpoint too


def test_a_message_over_the_size_limit_is_not_read_but_kept_in_unparsed(
    dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(1), message(2, size=200_000), message(3)])
    store = Store()

    stats = store.poll(mailbox_for(dovecot, user, max_message_bytes=100_000))

    assert store.handled == [1, 3]
    assert stats.failed == 1
    assert "over the limit of 100000" in store.errors[0]
    assert numbers(dovecot.bodies(user, "Unparsed")) == [2]


def test_a_handler_that_cannot_commit_stops_the_poll_and_leaves_the_message(
    dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(1), message(2), message(3)])
    store = Store(stop_at=2)

    stats = store.poll(mailbox_for(dovecot, user))

    assert stats.error == "stopped: database unreachable"
    assert numbers(dovecot.bodies(user, "INBOX")) == [2, 3]
    assert all(SEEN not in flags for _, flags in dovecot.contents(user, "INBOX").values())

    store.stop_at = None
    store.poll(mailbox_for(dovecot, user))
    assert store.handled == [1, 2, 3]
    assert dovecot.contents(user, "INBOX") == {}


def test_a_changed_uidvalidity_rereads_the_folder_and_counts_nothing_twice(
    dovecot: DovecotServer, user: str
) -> None:
    # A folder other than INBOX: it can be deleted and created again, which
    # gives it a new UIDVALIDITY, as a server migration or restore does.
    dovecot.append(user, [message(1), message(2)], folder="Bounces")
    store = Store()
    store.poll(mailbox_for(dovecot, user, "Bounces", batch_size=2))
    old = store.checkpoint
    dovecot.recreate_folder(user, "Bounces")
    # The restored folder has the old messages again, and a new one.
    dovecot.append(user, [message(1), message(2), message(3)], folder="Bounces")
    assert dovecot.uidvalidity(user, "Bounces") != old.uidvalidity

    stats = store.poll(mailbox_for(dovecot, user, "Bounces", batch_size=2))

    assert stats.rescanned
    assert store.handled == [1, 2, 1, 2, 3]  # read again from UID 1 ...
    assert len(store.counted) == 3  # ... and counted once
    assert store.checkpoint == Checkpoint(dovecot.uidvalidity(user, "Bounces"), 3)
    assert dovecot.contents(user, "Bounces") == {}


# ---------------------------------------------------------------- connection loss


def test_a_connection_dropped_mid_fetch_is_resumed_and_every_message_handled_once(
    dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(n, size=20_000) for n in range(1, 11)])
    store = Store()
    sleeps = Sleeps()
    # Batches of 4 messages of 20 kB. The first connection is cut during
    # the second batch's bodies, the second one during its first batch (no
    # progress: the back-off doubles), the third during its second batch.
    with cutting_proxy(dovecot.port, cuts=[90_000, 50_000, 100_000]) as proxy:
        url = parse_imap_url(f"imap://{user}:{PASSWORD}@127.0.0.1:{proxy.port}/INBOX")
        stats = store.poll(Mailbox(url, batch_size=4), sleeper=sleeps)

    assert proxy.cut_connections == 3
    assert stats.error == ""
    assert stats.reconnects == 3
    assert sleeps == [1.0, 2.0, 1.0]
    assert sorted(set(store.handled)) == list(range(1, 11))
    assert len(store.handled) == 10  # nothing handled twice: the cuts came before commits
    assert dovecot.contents(user, "INBOX") == {}
    assert numbers(dovecot.bodies(user, "Processed")) == list(range(1, 11))


def test_a_server_that_stays_away_ends_the_poll_after_bounded_back_off(
    dovecot: DovecotServer, user: str
) -> None:
    url = parse_imap_url(f"imap://{user}:{PASSWORD}@127.0.0.1:{free_port()}/INBOX")
    sleeps = Sleeps()

    stats = Store().poll(Mailbox(url, timeout=5), sleeper=sleeps, max_reconnects=4)

    assert sleeps == [1.0, 2.0, 4.0, 8.0]
    assert stats.error.startswith("connection lost 5 time(s) in a row")


def test_a_refused_login_is_not_retried(dovecot: DovecotServer, user: str) -> None:
    url = parse_imap_url(f"imap://{user}:wrong@127.0.0.1:{dovecot.port}/INBOX")
    sleeps = Sleeps()

    stats = Store().poll(Mailbox(url), sleeper=sleeps)

    assert sleeps == []
    assert "AUTHENTICATIONFAILED" in stats.error


def test_a_missing_folder_is_an_error_naming_the_server_reply(
    dovecot: DovecotServer, user: str
) -> None:
    stats = Store().poll(mailbox_for(dovecot, user, "Nowhere"), sleeper=Sleeps())
    assert "Mailbox doesn't exist: Nowhere" in stats.error


# ---------------------------------------------------------------- transport security


def test_implicit_tls_is_used_for_imaps(dovecot_tls: DovecotServer) -> None:
    user = dovecot_tls.new_user()
    dovecot_tls.append(user, [message(1)])
    url = parse_imap_url(dovecot_tls.url(user, scheme="imaps"))
    store = Store()
    mailbox = Mailbox(url, ssl_context=dovecot_tls.ssl_context())

    stats = store.poll(mailbox)

    assert (stats.error, stats.processed) == ("", 1)
    assert mailbox.security is Security.TLS


def test_starttls_is_used_when_offered_even_on_this_machine(dovecot_tls: DovecotServer) -> None:
    user = dovecot_tls.new_user()
    dovecot_tls.append(user, [message(1)])
    mailbox = Mailbox(parse_imap_url(dovecot_tls.url(user)), ssl_context=dovecot_tls.ssl_context())

    stats = Store().poll(mailbox)

    assert (stats.error, stats.processed) == ("", 1)
    assert mailbox.security is Security.STARTTLS


def test_a_certificate_that_does_not_verify_is_refused_and_not_retried(
    dovecot_tls: DovecotServer,
) -> None:
    user = dovecot_tls.new_user()
    sleeps = Sleeps()
    # The default trust store does not know the test's self-signed certificate.
    mailbox = Mailbox(parse_imap_url(dovecot_tls.url(user, scheme="imaps")))

    stats = Store().poll(mailbox, sleeper=sleeps)

    assert "CERTIFICATE_VERIFY_FAILED" in stats.error
    assert sleeps == []


def test_plain_text_is_used_only_with_a_server_on_this_machine(
    dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(1)])
    local = mailbox_for(dovecot, user)
    assert Store().poll(local).processed == 1
    assert local.security is Security.PLAIN

    # 127.0.0.2 stands for another machine: its address is not this machine's name.
    with cutting_proxy(dovecot.port, host="127.0.0.2") as proxy:
        url = parse_imap_url(f"imap://{user}:{PASSWORD}@127.0.0.2:{proxy.port}/INBOX")
        with pytest.raises(MailboxConfigError, match="refusing to send the password"):
            Mailbox(url).connect()


# ---------------------------------------------------------------- a server without MOVE


@pytest.fixture(scope="module")
def dovecot_without_move() -> Iterator[DovecotServer]:
    executable = find_dovecot()
    if executable is None:
        service_missing("dovecot is not installed (Debian package dovecot-imapd)")
        return
    server = start_dovecot(executable, capabilities="IMAP4rev1 LITERAL+ NAMESPACE UIDPLUS")
    try:
        yield server
    finally:
        server.stop()


def test_without_move_a_message_is_copied_and_only_its_own_uid_expunged(
    dovecot_without_move: DovecotServer,
) -> None:
    server = dovecot_without_move
    user = server.new_user()
    server.append(user, [message(1), message(2)])
    # Someone flagged another message \Deleted: it is not the poller's to expunge.
    with server.client(user) as client:
        client.select_folder("INBOX")
        client.append("INBOX", message(99))
        client.add_flags(client.search(["SUBJECT", "99"]), [b"\\Deleted"])
    mailbox = mailbox_for(server, user)

    class OnlyTwo(Store):
        def handle(self, fetched: FetchedMessage, checkpoint: Checkpoint) -> Folder:
            if number_of(fetched.raw) == 99:
                raise StopPoll("leave 99 alone")
            return super().handle(fetched, checkpoint)

    stats = OnlyTwo().poll(mailbox)

    assert stats.processed == 2
    assert numbers(server.bodies(user, "Processed")) == [1, 2]
    assert numbers(server.bodies(user, "INBOX")) == [99]


# ---------------------------------------------------------------- test connection


def test_probe_reports_greeting_login_and_folder(dovecot: DovecotServer, user: str) -> None:
    dovecot.append(user, [message(1), message(2)])

    report = probe(parse_imap_url(dovecot.url(user)))

    assert report.ok
    assert "Dovecot" in report.greeting
    assert "MOVE" in report.capabilities
    assert (report.logged_in, report.folder_exists, report.message_count) == (True, True, 2)
    assert report.uidvalidity == dovecot.uidvalidity(user)
    assert "secret" not in " ".join(report.lines())
    # Looking changed nothing.
    assert all(SEEN not in flags for _, flags in dovecot.contents(user, "INBOX").values())


def test_probe_names_the_failed_step_with_the_servers_words(
    dovecot: DovecotServer, user: str
) -> None:
    refused = probe(parse_imap_url(f"imap://{user}:wrong@127.0.0.1:{dovecot.port}/INBOX"))
    assert (refused.failed_step, refused.logged_in) == ("login", False)
    assert "Authentication failed" in refused.error

    missing = probe(parse_imap_url(dovecot.url(user, "Nowhere")))
    assert (missing.failed_step, missing.logged_in) == ("folder", True)
    assert "'Nowhere' does not exist" in missing.error


def test_probe_of_a_server_that_is_not_there(dovecot: DovecotServer, user: str) -> None:
    report = probe(parse_imap_url(f"imaps://u:p@127.0.0.1:{free_port()}/INBOX"), timeout=5)
    assert report.failed_step == "connect"
    assert "refused" in report.error.lower()


def test_tls_probe_names_the_security(dovecot_tls: DovecotServer) -> None:
    user = dovecot_tls.new_user()
    context = dovecot_tls.ssl_context()
    report = probe(parse_imap_url(dovecot_tls.url(user, scheme="imaps")), ssl_context=context)
    assert (report.ok, report.security) == (True, "implicit TLS")
    assert isinstance(context, ssl.SSLContext)
