"""The bounce mailbox's URL (``bounce.mailbox.parse_imap_url``): what an
administrator writes in SLUICE_IMAP_URL, and the key that names the
mailbox in the database and the logs without its password."""

from __future__ import annotations

import pytest

from bounce.mailbox import MailboxConfigError, parse_imap_url


def test_imaps_defaults_to_port_993_and_inbox() -> None:
    url = parse_imap_url("imaps://bounces:s3cret@imap.example.com")
    assert (url.scheme, url.host, url.port, url.folder) == (
        "imaps",
        "imap.example.com",
        993,
        "INBOX",
    )
    assert (url.username, url.password) == ("bounces", "s3cret")
    assert url.key == "imaps://bounces@imap.example.com:993/INBOX"


def test_user_password_and_folder_are_percent_decoded() -> None:
    url = parse_imap_url("imap://bounces%40example.com:p%2Fss%3Aw@127.0.0.1:1143/Bounce%20Box")
    assert (url.username, url.password, url.folder) == (
        "bounces@example.com",
        "p/ss:w",
        "Bounce Box",
    )
    assert url.port == 1143 and url.is_local
    assert url.key == "imap://bounces%40example.com@127.0.0.1:1143/Bounce%20Box"


def test_the_password_is_never_shown() -> None:
    url = parse_imap_url("imaps://bounces:s3cret@imap.example.com/INBOX")
    assert "s3cret" not in repr(url) and "s3cret" not in url.key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pop3://u:p@host/INBOX", "must start with imaps:// or imap://"),
        ("imaps:///INBOX", "has no host"),
        ("imaps://host/INBOX", "needs a user and a password"),
        ("imaps://user@host/INBOX", "needs a user and a password"),
        ("imaps://u:p@host:99999/INBOX", "invalid port"),
        ("imaps://u:p@host/INBOX?starttls=1", "takes no query"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(MailboxConfigError, match=message) as refused:
        parse_imap_url(text)
    assert "p@" not in str(refused.value)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST"])
def test_only_this_machine_counts_as_local(host: str) -> None:
    assert parse_imap_url(f"imap://u:p@{host}/INBOX").is_local


@pytest.mark.parametrize("host", ["127.0.0.2", "imap.example.com", "10.0.0.1"])
def test_any_other_host_is_remote(host: str) -> None:
    assert not parse_imap_url(f"imap://u:p@{host}/INBOX").is_local
